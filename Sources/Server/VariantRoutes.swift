import Foundation
import LanguageModel
import Tokenizers
import Transfer

/// The admin API for variants (DESIGN.md, HTTP API): every route needs the bearer token.
/// Building and validating run on a background queue; the loop thread publishes the result,
/// so the engine never waits and a failed build changes nothing.
extension GraftServer {
    /// Handles `/v1/variants…`; false when the path is not one of them.
    func routeAdmin(_ exchange: Exchange, path: String) -> Bool {
        let r = exchange.request
        if path == "/v1/transfers" || path.hasPrefix("/v1/jobs/") {
            exchange.route = path == "/v1/transfers" ? path : "/v1/jobs/{id}"
            if let refusal = adminAuth.check(r) { exchange.respond(error: refusal); return true }
            let id = String(path.dropFirst("/v1/jobs/".count))
            switch (r.method, path == "/v1/transfers") {
            case ("POST", true): startTransfer(exchange)
            case ("GET", false): showJob(exchange, id: id)
            case ("DELETE", false): cancelJob(exchange, id: id)
            default: exchange.respond(error: .methodNotAllowed(r.method, path))
            }
            return true
        }
        if path == "/v1/plugins" {
            exchange.route = path
            if let refusal = adminAuth.check(r) {
                exchange.respond(error: refusal)
            } else if r.method != "GET" {
                exchange.respond(error: .methodNotAllowed(r.method, path))
            } else {
                listPlugins(exchange)
            }
            return true
        }
        let prefix = "/v1/variants"
        guard path == prefix || path.hasPrefix(prefix + "/") else { return false }
        let rest = path == prefix ? []
            : path.dropFirst(prefix.count + 1).split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        exchange.route = rest.isEmpty ? prefix : (rest.count == 2 && rest[1] == "default" ? prefix + "/{name}/default" : prefix + "/{name}")
        if let refusal = adminAuth.check(r) {
            exchange.respond(error: refusal)
            return true
        }
        switch (r.method, rest.count) {
        case ("GET", 0): listVariants(exchange)
        case ("POST", 0): createVariant(exchange)
        case ("GET", 1): showVariant(exchange, name: rest[0])
        case ("PUT", 1): reloadVariant(exchange, name: rest[0])
        case ("DELETE", 1): deleteVariant(exchange, name: rest[0])
        case ("POST", 2) where rest[1] == "default": makeDefault(exchange, name: rest[0])
        case (_, 0), (_, 1): exchange.respond(error: .methodNotAllowed(r.method, path))
        default: exchange.respond(error: .notFound("Unknown route \(r.method) \(r.path.prefix(200))."))
        }
        return true
    }

    // MARK: Routes

    /// Loading a plugin runs its entry point: off the loop thread.
    private func listPlugins(_ exchange: Exchange) {
        let host = pluginHost, http = self.http
        DispatchQueue.global(qos: .utility).async {
            let (plugins, refused) = host.list()
            let items: [JSON] = plugins.map { p in
                .object([("name", .string(p.name)), ("object", .string("plugin")), ("description", .string(p.description)),
                         ("abi_version", .string("\(p.abiVersion >> 16).\(p.abiVersion & 0xFFFF)"))])
            }
            let bad: [JSON] = refused.keys.sorted().map { .object([("name", .string($0)), ("error", .string(refused[$0]!))]) }
            let body = JSON.object([("object", .string("list")), ("directory", .string(host.directory)),
                                    ("data", .array(items)), ("refused", .array(bad))])
            http.post { exchange.respond(json: body) }
        }
    }

    private func listVariants(_ exchange: Exchange) {
        let items = registry.names.compactMap { registry[$0] }.map(variantJSON)
        exchange.respond(json: .object([("object", .string("list")), ("default", .string(registry.defaultName ?? modelID)),
                                        ("fingerprint", .string(variantBuilder.fingerprint)), ("data", .array(items))]))
    }

    private func showVariant(_ exchange: Exchange, name: String) {
        guard let entry = registry[name] else { return exchange.respond(error: variantNotFound(name)) }
        exchange.respond(json: variantJSON(entry))
    }

    private func createVariant(_ exchange: Exchange) {
        guard let body = jsonBody(exchange) else { return }
        let name: String, spec: VariantSpec
        do {
            (name, spec) = try parseSpec(body, name: nil)
        } catch {
            return exchange.respond(error: error)
        }
        guard registry[name] == nil else {
            return exchange.respond(error: APIError(status: 409, type: "invalid_request_error",
                                                    message: "A variant named '\(name)' exists (hint: PUT /v1/variants/\(name) replaces it).",
                                                    param: "name", code: "variant_exists"))
        }
        build(exchange, name: name, spec: spec, status: 201)
    }

    /// `PUT /v1/variants/{name}`: with no body, rebuilds from the same deltas (a delta file
    /// rewritten in place is read anew); with a body, replaces the variant's spec.
    private func reloadVariant(_ exchange: Exchange, name: String) {
        var spec: VariantSpec
        if exchange.request.body.allSatisfy({ $0 == 0x20 || $0 == 0x0A || $0 == 0x0D || $0 == 0x09 }) {
            guard let entry = registry[name] else { return exchange.respond(error: variantNotFound(name)) }
            spec = entry.spec
        } else {
            guard let body = jsonBody(exchange) else { return }
            do {
                spec = try parseSpec(body, name: name).1
            } catch {
                return exchange.respond(error: error)
            }
        }
        build(exchange, name: name, spec: spec, status: 200)
    }

    /// Removes the name and cancels whatever would publish it later: a POST/PUT build in flight
    /// (it publishes nothing and answers 409) and a transfer job for it (cancelled), so the
    /// name stays deleted until a later POST/PUT.
    private func deleteVariant(_ exchange: Exchange, name: String) {
        let removed = registry.remove(name) != nil
        let droppedBuild = registry.dropBuild(name)
        let cancelled = cancelTransfers(forVariant: name) || droppedBuild
        guard removed || cancelled else { return exchange.respond(error: variantNotFound(name)) }
        metrics.variants.set(Double(registry.entries.count))
        logger.notice("variant '\(name)' removed\(cancelled ? ", its build in flight cancelled" : "") (running requests keep it until they end)")
        exchange.respond(json: .object([("id", .string(name)), ("object", .string("variant")), ("deleted", .bool(true)),
                                        ("build_cancelled", .bool(cancelled))]))
    }

    private func makeDefault(_ exchange: Exchange, name: String) {
        if name == modelID || name == modelAlias {
            registry.setDefault(nil)
        } else {
            guard registry[name] != nil else { return exchange.respond(error: variantNotFound(name)) }
            registry.setDefault(name)
        }
        exchange.respond(json: .object([("default", .string(registry.defaultName ?? modelID))]))
    }

    // MARK: Building

    /// Builds off the loop and engine threads (a plugin in a child process), then publishes on
    /// the loop thread, unless a `DELETE` of the name arrived meanwhile: then nothing is
    /// published and the request gets 409.
    private func build(_ exchange: Exchange, name: String, spec: VariantSpec, status: Int) {
        guard let id = registry.beginBuild(name) else {
            return exchange.respond(error: APIError(status: 409, type: "invalid_request_error",
                                                    message: "The variant '\(name)' is being built; retry when that finishes.",
                                                    code: "variant_busy"))
        }
        let builder = variantBuilder, http = self.http
        let started = DispatchTime.now().uptimeNanoseconds
        let finish: @Sendable (Result<(Variant, VariantProvenance), Error>) -> Void = { [self] result in
            guard registry.endBuild(name, id: id) else {
                logger.notice("variant '\(name)' deleted while it was being built: nothing published")
                return exchange.respond(error: APIError(status: 409, type: "invalid_request_error",
                                                        message: "DELETE /v1/variants/\(name) arrived while this build ran: nothing was published.",
                                                        code: "variant_deleted"))
            }
            switch result {
            case .success(let (variant, provenance)):
                let entry = VariantRegistry.Entry(variant: variant, provenance: provenance, spec: spec, created: Int(Date().timeIntervalSince1970))
                registry.publish(entry)
                metrics.variants.set(Double(registry.entries.count))
                let seconds = Double(DispatchTime.now().uptimeNanoseconds - started) / 1e9
                logger.notice("variant '\(name)' published in \(String(format: "%.3f", seconds)) s (\(variant.residentBytes) bytes)")
                exchange.respond(status: status, json: variantJSON(entry))
            case .failure(let error):
                logger.warning("variant '\(name)' refused: \(error)")
                exchange.respond(error: Self.apiError(error))
            }
        }
        if spec.plugin != nil { return runPluginBuild(name: name, spec: spec, build: id, finish: finish) }
        DispatchQueue.global(qos: .utility).async {
            let result = Result { try Self.buildVariant(builder, name: name, spec: spec) }
            http.post { finish(result) }
        }
    }

    /// A variant from delta files, or from the delta a plugin's child process wrote (`pluginDelta`).
    static func buildVariant(_ builder: VariantBuilder, name: String, spec: VariantSpec,
                             pluginDelta: String? = nil) throws -> (Variant, VariantProvenance) {
        if let plugin = spec.plugin {
            // Plugins never run in the server's process (runPluginBuild).
            guard let pluginDelta else { throw TransferError.plugin(name: plugin, "plugin variants are built in a child process") }
            let delta = try builder.readDelta(operatorPath: pluginDelta)
            return try builder.build(name: name, deltas: [("plugin:" + plugin, delta)], mode: spec.mode, bounds: spec.bounds, valueType: spec.valueType)
        }
        let deltas = try spec.deltas.map { path in
            (origin: path, delta: spec.operatorPaths ? try builder.readDelta(operatorPath: path) : try builder.readDelta(relativePath: path))
        }
        return try builder.build(name: name, deltas: deltas, mode: spec.mode, bounds: spec.bounds, valueType: spec.valueType)
    }

    static func apiError(_ error: Error) -> APIError {
        if let failure = error as? PluginBuildFailure { return failure.apiError }
        if let refusal = error as? APIError { return refusal }
        guard let t = error as? TransferError else {
            return APIError(status: 500, type: "server_error", message: "Building the variant failed: \(error)")
        }
        return apiError(kind: t.kind, message: t.description)
    }

    /// A `TransferError` by its case name (`TransferError.kind`) and text.
    static func apiError(kind: String, message: String) -> APIError {
        switch kind {
        case "badPath":
            return APIError(status: 400, type: "invalid_request_error", message: message, param: "delta", code: "invalid_delta_path")
        case "plugin":
            return APIError(status: 400, type: "invalid_request_error", message: message, param: "plugin", code: "plugin_failed")
        default:
            return APIError(status: 400, type: "invalid_request_error", message: message, param: "delta", code: "invalid_delta")
        }
    }

    // MARK: JSON

    /// `{"name", "delta": path | [paths], "mode": "unmerged"|"merged", "delta_dtype": "auto"|"f32"|"bf16",
    /// "bounds": {"max_abs_value", "max_relative_norm"}}`.
    func parseSpec(_ body: JSONValue, name fixedName: String?) throws(APIError) -> (String, VariantSpec) {
        guard body.members != nil else { throw .invalid("The body must be a JSON object.") }
        let name: String
        if let fixedName {
            if let given = try body.optionalString("name"), given != fixedName {
                throw .invalid("name '\(given)' differs from the path's '\(fixedName)'.", param: "name")
            }
            name = fixedName
        } else {
            guard let given = try body.optionalString("name") else { throw .invalid("name is required.", param: "name") }
            name = given
        }
        guard VariantRegistry.isValidName(name), name != modelID, name != modelAlias else {
            throw .invalid("name must be 1–64 letters, digits, '.', '_' or '-', and not '\(modelID)' or '\(modelAlias)'.", param: "name")
        }
        var spec = VariantSpec(deltas: [])
        if let plugin = try body.optionalString("plugin") {
            guard PluginHost.isValidName(plugin) else {
                throw .invalid("plugin must be a plugin name (lowercase letters, digits, '-', '_'; GET /v1/plugins lists them), never a path.", param: "plugin")
            }
            guard body["delta"] == nil || body["delta"]!.isNull else { throw .invalid("Give delta or plugin, not both.", param: "plugin") }
            let params = body["params"] ?? .object([])
            guard params.members != nil else { throw .invalid("params must be an object.", param: "params") }
            spec.plugin = plugin
            spec.params = String(decoding: Self.json(params).bytes, as: UTF8.self)
        } else {
        switch body["delta"] {
        case .string(let s)?: spec.deltas = [s]
        case .array(let items)?:
            spec.deltas = items.compactMap(\.string)
            guard spec.deltas.count == items.count, !items.isEmpty, items.count <= 64 else {
                throw .invalid("delta must be a path or an array of 1–64 paths.", param: "delta")
            }
        default: throw .invalid("delta must be a path relative to the delta directory.", param: "delta")
        }
        }
        if let m = try body.optionalString("mode") {
            guard let mode = VariantMode(rawValue: m) else { throw .invalid("mode must be 'unmerged' or 'merged'.", param: "mode") }
            spec.mode = mode
        }
        if let t = try body.optionalString("delta_dtype") {
            guard let valueType = DeltaValueType(rawValue: t) else {
                throw .invalid("delta_dtype must be 'auto' (bf16 over a 16-bit base, else f32), 'f32' or 'bf16'.", param: "delta_dtype")
            }
            spec.valueType = valueType
        }
        if let b = body["bounds"], !b.isNull {
            guard b.members != nil else { throw .invalid("bounds must be an object.", param: "bounds") }
            func bound(_ key: String) throws(APIError) -> Float? {
                guard let v = b[key], !v.isNull else { return nil }
                if v.string == "inf" { return .infinity }
                guard let d = v.double, d > 0 else { throw .invalid("bounds.\(key) must be a positive number or \"inf\".", param: "bounds") }
                return Float(d)
            }
            if let v = try bound("max_abs_value") { spec.bounds.maxAbsValue = v }
            if let v = try bound("max_relative_norm") { spec.bounds.maxRelativeNorm = v }
        }
        return (name, spec)
    }

    /// A parsed JSON value written back (plugin params cross the ABI as text).
    static func json(_ v: JSONValue) -> JSON {
        switch v {
        case .null: .null
        case .bool(let b): .bool(b)
        case .number(let d): d == d.rounded() && abs(d) < 9e15 ? .int(Int(d)) : .double(d)
        case .string(let s): .string(s)
        case .array(let items): .array(items.map(json))
        case .object(let members): .object(members.map { ($0.key, json($0.value)) })
        }
    }

    func variantJSON(_ entry: VariantRegistry.Entry) -> JSON {
        let p = entry.provenance
        func bound(_ v: Float) -> JSON { v.isFinite ? .double(Double(v)) : .string("inf") }
        let sources: [JSON] = p.sources.map { s in
            .object([("origin", .string(s.origin)), ("content_sha256", .string(s.contentHash)),
                     ("metadata", .object(s.metadata.keys.sorted().map { ($0, .string(s.metadata[$0]!)) }))])
        }
        return .object([
            ("id", .string(entry.variant.name)), ("object", .string("variant")), ("created", .int(entry.created)),
            ("base", .string(modelAlias)), ("fingerprint", .string(variantBuilder.fingerprint)),
            ("content_fingerprint", .string(p.contentFingerprint)),
            ("default", .bool(registry.defaultName == entry.variant.name)), ("quarantined", .bool(entry.quarantined)),
            ("mode", .string(p.mode.rawValue)), ("resident_bytes", .int(p.residentBytes)),
            ("tensors", .int(entry.variant.targets.count)), ("delta_dtype", .string(p.valueType)),
            ("bounds", .object([("max_abs_value", bound(p.bounds.maxAbsValue)), ("max_relative_norm", bound(p.bounds.maxRelativeNorm))])),
            ("provenance", .array(sources)),
        ])
    }

    private func variantNotFound(_ name: String) -> APIError {
        .notFound("No variant named '\(name.prefix(100))' (hint: GET /v1/variants lists them).", code: "variant_not_found")
    }
}
