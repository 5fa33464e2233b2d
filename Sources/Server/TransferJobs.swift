import Foundation
import LanguageModel
import Transfer

/// A strategy run started by `POST /v1/transfers`: a child `graft delta build` process (a
/// crashing plugin takes only the child down) that writes its delta into the delta directory;
/// the server then validates and publishes it as a variant. Loop thread only (other threads
/// only post closures that touch it back to the loop, hence the unchecked Sendable).
final class TransferJob: @unchecked Sendable {
    enum State: String { case running, succeeded, failed, cancelled }

    let id: String
    let name: String
    let plugin: String
    let spec: VariantSpec
    let created = Int(Date().timeIntervalSince1970)
    var state = State.running
    var progress = 0.0
    var error: String?
    var cancelRequested = false
    var process: Process?
    var stderr = Data()

    init(id: String, name: String, plugin: String, spec: VariantSpec) {
        self.id = id
        self.name = name
        self.plugin = plugin
        self.spec = spec
    }

    var json: JSON {
        .object([("id", .string(id)), ("object", .string("transfer.job")), ("created", .int(created)),
                 ("status", .string(state.rawValue)), ("progress", .double(progress)), ("plugin", .string(plugin)),
                 ("variant", .string(name)), ("delta", .string(spec.deltas.first ?? "")), ("error", .optional(error))])
    }
}

/// The jobs, by id (loop thread only).
final class TransferJobs {
    var jobs: [String: TransferJob] = [:]
    var next = 1
}

extension GraftServer {
    /// `POST /v1/transfers` `{"name", "plugin", "params", "mode", "bounds"}` → 202 and the job.
    func startTransfer(_ exchange: Exchange) {
        guard let body = jsonBody(exchange) else { return }
        var (name, spec): (String, VariantSpec)
        do {
            (name, spec) = try parseSpec(body, name: nil)
        } catch {
            return exchange.respond(error: error)
        }
        guard let plugin = spec.plugin else { return exchange.respond(error: .invalid("plugin is required.", param: "plugin")) }
        let id = "job-\(transfers.next)"
        transfers.next += 1
        let output = "transfers/\(id)-\(name).safetensors"
        spec.plugin = nil
        spec.deltas = [output]
        let job = TransferJob(id: id, name: name, plugin: plugin, spec: spec)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: options.graftExecutable ?? Self.runningExecutable)
        process.arguments = ["delta", "build", "--model", options.modelDirectory, "--plugin", plugin, "--params", body["params"].map { String(decoding: Self.json($0).bytes, as: UTF8.self) } ?? "{}",
                             "--delta-dir", options.deltaDirectory, "--plugin-dir", pluginHost.directory, "-o", output]
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        process.standardInput = FileHandle.nullDevice
        let http = self.http
        out.fileHandleForReading.readabilityHandler = { handle in
            let text = String(decoding: handle.availableData, as: UTF8.self)
            let values = text.split(separator: "\n").compactMap { line in line.hasPrefix("progress ") ? Double(line.dropFirst(9)) : nil }
            guard let last = values.last else { return }
            http.post { job.progress = last }
        }
        err.fileHandleForReading.readabilityHandler = { handle in
            let data = handle.availableData
            http.post { if job.stderr.count < 16384 { job.stderr.append(data) } }
        }
        process.terminationHandler = { [self] p in
            let status = p.terminationStatus
            out.fileHandleForReading.readabilityHandler = nil
            err.fileHandleForReading.readabilityHandler = nil
            http.post { [self] in finishTransfer(job, status: status) }
        }
        do {
            try FileManager.default.createDirectory(atPath: options.deltaDirectory + "/transfers", withIntermediateDirectories: true)
            try process.run()
        } catch {
            return exchange.respond(error: APIError(status: 500, type: "server_error", message: "Cannot start the transfer process: \(error)"))
        }
        // Serving comes first: the job runs at a lower priority.
        setpriority(__priority_which_t(PRIO_PROCESS.rawValue), id_t(process.processIdentifier), 10)
        job.process = process
        transfers.jobs[id] = job
        logger.notice("transfer \(id): plugin '\(plugin)' for variant '\(name)' started (pid \(process.processIdentifier))")
        exchange.respond(status: 202, json: job.json)
    }

    private func finishTransfer(_ job: TransferJob, status: Int32) {
        job.process = nil
        if job.cancelRequested {
            job.state = .cancelled
            return
        }
        guard status == 0 else {
            job.state = .failed
            let text = String(decoding: job.stderr, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            job.error = text.isEmpty ? "the transfer process exited with status \(status)" : String(text.suffix(2000))
            return
        }
        job.progress = 1
        guard !registry.building.contains(job.name) else {
            job.state = .failed
            job.error = "another build of '\(job.name)' was in progress; the delta is at \(job.spec.deltas[0])"
            return
        }
        registry.building.insert(job.name)
        let builder = variantBuilder, plugins = pluginHost, tokenizer = self.tokenizer, http = self.http
        DispatchQueue.global(qos: .utility).async { [self] in
            let result = Result { try Self.buildVariant(builder, plugins: plugins, tokenizer: tokenizer, name: job.name, spec: job.spec) }
            http.post { [self] in
                registry.building.remove(job.name)
                switch result {
                case .success(let (variant, provenance)):
                    registry.publish(.init(variant: variant, provenance: provenance, spec: job.spec, created: Int(Date().timeIntervalSince1970)))
                    metrics.variants.set(Double(registry.entries.count))
                    job.state = .succeeded
                case .failure(let error):
                    job.state = .failed
                    job.error = "\(error)"
                }
            }
        }
    }

    func showJob(_ exchange: Exchange, id: String) {
        guard let job = transfers.jobs[id] else { return exchange.respond(error: .notFound("No job '\(id.prefix(64))'.", code: "job_not_found")) }
        exchange.respond(json: job.json)
    }

    func cancelJob(_ exchange: Exchange, id: String) {
        guard let job = transfers.jobs[id] else { return exchange.respond(error: .notFound("No job '\(id.prefix(64))'.", code: "job_not_found")) }
        if job.state == .running, let process = job.process {
            job.cancelRequested = true
            process.terminate()
        }
        exchange.respond(json: job.json)
    }

    /// The running executable (`graft` when serving).
    static var runningExecutable: String {
        (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    }
}
