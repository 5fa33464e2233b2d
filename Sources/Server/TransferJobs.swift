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

/// The jobs, by id, and every `graft delta build` child running, by pid (loop thread only).
final class TransferJobs {
    var jobs: [String: TransferJob] = [:]
    var next = 1
    var children: [Int32: Process] = [:]
}

/// How a `graft delta build` child ended: its status (the signal's number when `signalled`),
/// the `error <kind> <message>` line it printed, and the end of its stderr.
struct DeltaBuildExit: Sendable {
    var status: Int32
    var signalled: Bool
    var errorKind: String?
    var errorMessage: String?
    var stderr: Data

    var succeeded: Bool { status == 0 && !signalled }

    /// A one-line account of the failure (for a job's error or a refused variant).
    var failureText: String {
        let tail = String(decoding: stderr, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        if signalled {
            let name = strsignal(status).map { String(cString: $0) } ?? "signal"
            // Its stderr (a crash report) goes to the server's log, not here.
            return "the plugin process was killed by signal \(status) (\(name))"
        }
        if let errorMessage { return errorMessage }
        return tail.isEmpty ? "the plugin process exited with status \(status)" : String(tail.suffix(2000))
    }
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
        let process: Process
        do {
            try FileManager.default.createDirectory(atPath: options.deltaDirectory + "/transfers", withIntermediateDirectories: true)
            process = try startDeltaBuild(deltaBuildArguments(plugin: plugin, params: body["params"].map { String(decoding: Self.json($0).bytes, as: UTF8.self) } ?? "{}") + ["-o", output],
                                          label: id, stderrPath: options.deltaDirectory + "/transfers/\(id).stderr",
                                          progress: { job.progress = $0 },
                                          exit: { [self] in finishTransfer(job, exit: $0) })
        } catch {
            return exchange.respond(error: APIError(status: 500, type: "server_error", message: "Cannot start the transfer process: \(error)"))
        }
        job.process = process
        transfers.jobs[id] = job
        logger.notice("transfer \(id): plugin '\(plugin)' for variant '\(name)' started (pid \(process.processIdentifier))")
        exchange.respond(status: 202, json: job.json)
    }

    /// `graft delta build`'s arguments for a plugin run, less the output.
    func deltaBuildArguments(plugin: String, params: String) -> [String] {
        ["delta", "build", "--model", options.modelDirectory, "--plugin", plugin, "--params", params,
         "--delta-dir", options.deltaDirectory, "--plugin-dir", pluginHost.directory, "--status-lines"] + modelSources.arguments
    }

    /// Starts a child `graft delta build` at a lower priority than serving. `progress` and `exit`
    /// run on the loop thread; stderr goes to `stderrPath` (removed once read), so the child
    /// never blocks on it.
    func startDeltaBuild(_ arguments: [String], label: String, stderrPath: String,
                         progress: @escaping @Sendable (Double) -> Void,
                         exit: @escaping @Sendable (DeltaBuildExit) -> Void) throws -> Process {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: options.graftExecutable ?? Self.runningExecutable)
        process.arguments = arguments
        // Blocking reads on a thread of the child's own, not FileHandle.readabilityHandler
        // (its dispatch sources crash swift-corelibs-foundation when the pipe closes as the
        // child exits).
        let out = Pipe()
        guard FileManager.default.createFile(atPath: stderrPath, contents: nil), let errFile = FileHandle(forWritingAtPath: stderrPath) else {
            throw ServerError.startup("cannot create \(stderrPath)")
        }
        process.standardOutput = out
        process.standardError = errFile
        process.standardInput = FileHandle.nullDevice
        do {
            try process.run()
        } catch {
            try? errFile.close()
            try? FileManager.default.removeItem(atPath: stderrPath)
            throw error
        }
        try? errFile.close()
        try? out.fileHandleForWriting.close()
        let http = self.http
        let pid = process.processIdentifier
        transfers.children[pid] = process
        let reader = Thread { [self] in
            let handle = out.fileHandleForReading
            var pending = ""
            var failure: (kind: String, message: String)?
            while true {
                let data = handle.availableData
                if data.isEmpty { break }
                pending += String(decoding: data, as: UTF8.self)
                var last: Double?
                while let nl = pending.firstIndex(of: "\n") {
                    let line = pending[..<nl]
                    if line.hasPrefix("progress "), let v = Double(line.dropFirst(9)) { last = v }
                    if line.hasPrefix("error ") {
                        let rest = line.dropFirst(6)
                        let kind = rest.prefix { $0 != " " }
                        failure = (String(kind), String(rest.dropFirst(kind.count + 1)))
                    }
                    pending = String(pending[pending.index(after: nl)...])
                }
                if let last { http.post { progress(last) } }
            }
            process.waitUntilExit()
            let result = DeltaBuildExit(status: process.terminationStatus, signalled: process.terminationReason == .uncaughtSignal,
                                        errorKind: failure?.kind, errorMessage: failure?.message,
                                        stderr: ((try? Data(contentsOf: URL(fileURLWithPath: stderrPath))) ?? Data()).suffix(16384))
            try? FileManager.default.removeItem(atPath: stderrPath)
            http.post { [self] in
                transfers.children[pid] = nil
                if !result.succeeded {
                    let text = String(decoding: result.stderr, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
                    logger.warning("plugin process \(label) (pid \(pid)) failed: \(result.failureText)\(text.isEmpty ? "" : "; its stderr:\n" + text)")
                }
                exit(result)
            }
        }
        reader.name = "graft-build-\(label)"
        reader.start()
        // Serving comes first.
        setpriority(__priority_which_t(PRIO_PROCESS.rawValue), id_t(pid), 10)
        return process
    }

    private func finishTransfer(_ job: TransferJob, exit: DeltaBuildExit) {
        job.process = nil
        if job.cancelRequested {
            job.state = .cancelled
            return
        }
        guard exit.succeeded else {
            job.state = .failed
            job.error = exit.failureText
            return
        }
        job.progress = 1
        guard let build = registry.beginBuild(job.name) else {
            job.state = .failed
            job.error = "another build of '\(job.name)' was in progress; the delta is at \(job.spec.deltas[0])"
            return
        }
        let builder = variantBuilder, http = self.http
        DispatchQueue.global(qos: .utility).async { [self] in
            let result = Result { try Self.buildVariant(builder, name: job.name, spec: job.spec) }
            http.post { [self] in
                guard registry.endBuild(job.name, id: build) else {
                    job.state = .cancelled
                    job.error = "DELETE /v1/variants/\(job.name) arrived while the variant was being built: nothing was published (the delta is at \(job.spec.deltas[0]))"
                    return
                }
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

    /// `DELETE /v1/variants/{name}` cancels the transfer jobs whose plugin still runs for that
    /// name (the process is terminated; a job already validating is dropped by the registry).
    /// Returns whether there was one.
    func cancelTransfers(forVariant name: String) -> Bool {
        var any = false
        for job in transfers.jobs.values where job.name == name && job.state == .running {
            guard let process = job.process else { continue }
            job.cancelRequested = true
            job.error = "cancelled by DELETE /v1/variants/\(name)"
            if process.isRunning { process.terminate() }
            any = true
        }
        return any
    }

    /// The running executable (`graft` when serving).
    static var runningExecutable: String {
        (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    }
}

/// A plugin variant's child process failed: crashed (signal), refused (its `error` line), or
/// could not do its work.
struct PluginBuildFailure: Error, CustomStringConvertible {
    let plugin: String
    let exit: DeltaBuildExit

    var description: String { "plugin '\(plugin)': \(exit.failureText)" }

    var apiError: APIError {
        if exit.signalled {
            return APIError(status: 500, type: "server_error",
                            message: "The plugin '\(plugin)' crashed in its child process (\(exit.failureText)). Nothing was published; the server keeps serving (its crash report is in the server's log).",
                            param: "plugin", code: "plugin_crashed")
        }
        if let kind = exit.errorKind, kind != "other" { return GraftServer.apiError(kind: kind, message: exit.failureText) }
        return APIError(status: 500, type: "server_error", message: "The plugin '\(plugin)' process failed: \(exit.failureText)",
                        param: "plugin", code: "plugin_process_failed")
    }
}

extension GraftServer {
    /// A fresh folder (mode 0700, unique name) for the temporary files of plugin variant
    /// builds, made at start and removed at stop.
    static func makeBuildDirectory() throws -> String {
        var template = Array((FileManager.default.temporaryDirectory.path + "/graft-builds-XXXXXX").utf8CString)
        guard let made = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            throw ServerError.startup("cannot create a temporary folder for plugin builds: \(String(cString: strerror(errno)))")
        }
        return String(cString: made)
    }

    /// The plugin of a `POST`/`PUT /v1/variants` runs in a child `graft delta build` (as a
    /// transfer job's does) that writes a private temporary file; the server then reads,
    /// validates and builds the variant from it like any delta file and removes the file.
    /// A `DELETE` of the name terminates the child. `finish` runs on the loop thread.
    func runPluginBuild(name: String, spec: VariantSpec, build: Int,
                        finish: @escaping @Sendable (Result<(Variant, VariantProvenance), Error>) -> Void) {
        guard let plugin = spec.plugin else { return }
        let stem = buildDirectory + "/build-\(build)-\(name)"
        let output = stem + ".safetensors"
        let builder = variantBuilder, http = self.http
        do {
            let process = try startDeltaBuild(deltaBuildArguments(plugin: plugin, params: spec.params) + ["--output-file", output],
                                              label: "\(name)-\(build)", stderrPath: stem + ".stderr", progress: { _ in },
                                              exit: { exit in
                guard exit.succeeded else {
                    try? FileManager.default.removeItem(atPath: output)
                    return finish(.failure(PluginBuildFailure(plugin: plugin, exit: exit)))
                }
                DispatchQueue.global(qos: .utility).async {
                    let result = Result { try Self.buildVariant(builder, name: name, spec: spec, pluginDelta: output) }
                    try? FileManager.default.removeItem(atPath: output)
                    http.post { finish(result) }
                }
            })
            registry.setCancel(name, id: build) { if process.isRunning { process.terminate() } }
        } catch {
            finish(.failure(APIError(status: 500, type: "server_error", message: "Cannot start the plugin process: \(error)")))
        }
    }
}
