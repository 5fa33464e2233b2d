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
                             "--delta-dir", options.deltaDirectory, "--plugin-dir", pluginHost.directory, "-o", output] + modelSources.arguments
        // Blocking reads on a thread of the job's own, not FileHandle.readabilityHandler
        // (its dispatch sources crash swift-corelibs-foundation when the pipe closes as the
        // child exits). stderr goes to a file, so the child never blocks on it.
        let out = Pipe()
        let errPath = options.deltaDirectory + "/transfers/\(id).stderr"
        do {
            try FileManager.default.createDirectory(atPath: options.deltaDirectory + "/transfers", withIntermediateDirectories: true)
            guard FileManager.default.createFile(atPath: errPath, contents: nil), let errFile = FileHandle(forWritingAtPath: errPath) else {
                throw ServerError.startup("cannot create \(errPath)")
            }
            process.standardOutput = out
            process.standardError = errFile
            process.standardInput = FileHandle.nullDevice
            try process.run()
            try? errFile.close()
        } catch {
            return exchange.respond(error: APIError(status: 500, type: "server_error", message: "Cannot start the transfer process: \(error)"))
        }
        try? out.fileHandleForWriting.close()
        let http = self.http
        let reader = Thread { [self] in
            let handle = out.fileHandleForReading
            var pending = ""
            while true {
                let data = handle.availableData
                if data.isEmpty { break }
                pending += String(decoding: data, as: UTF8.self)
                var last: Double?
                while let nl = pending.firstIndex(of: "\n") {
                    let line = pending[..<nl]
                    if line.hasPrefix("progress "), let v = Double(line.dropFirst(9)) { last = v }
                    pending = String(pending[pending.index(after: nl)...])
                }
                if let last { http.post { job.progress = last } }
            }
            process.waitUntilExit()
            let status = process.terminationStatus
            let stderr = (try? Data(contentsOf: URL(fileURLWithPath: errPath))) ?? Data()
            try? FileManager.default.removeItem(atPath: errPath)
            http.post { [self] in
                job.stderr = stderr.suffix(16384)
                finishTransfer(job, status: status)
            }
        }
        reader.name = "graft-transfer-\(id)"
        reader.start()
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
