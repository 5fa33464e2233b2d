import Foundation

/// Runs a helper program (pip, gzip, sha256sum, gnuplot) to completion and captures its output.
/// Not for untrusted code: that goes through `Sandbox`.
enum Subprocess {
    struct Result { var status: Int32; var stdout: Data; var stderr: String }

    /// Finds `name` on PATH (or returns it unchanged when it is a path).
    static func which(_ name: String) -> String? {
        if name.contains("/") { return FileManager.default.isExecutableFile(atPath: name) ? name : nil }
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        for dir in path.split(separator: ":") {
            let candidate = "\(dir)/\(name)"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return nil
    }

    static func run(_ executable: String, _ arguments: [String], stdin: Data? = nil,
                    directory: String? = nil) throws(EvaluationError) -> Result {
        guard let exe = which(executable) else {
            throw .missingTool(executable, hint: "install it or put it on PATH")
        }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: exe)
        p.arguments = arguments
        if let directory { p.currentDirectoryURL = URL(fileURLWithPath: directory) }
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        let inPipe = Pipe()
        p.standardInput = stdin == nil ? FileHandle.nullDevice : inPipe
        do { try p.run() } catch { throw .missingTool(executable, hint: "\(error)") }
        if let stdin {
            // Feed stdin from another thread so a large input cannot deadlock against a full stdout.
            let writer = inPipe.fileHandleForWriting
            Thread.detachNewThread { writer.write(stdin); try? writer.close() }
        }
        // Read stderr in the background while stdout is drained here.
        let errBox = DataBox()
        let errHandle = err.fileHandleForReading
        let group = DispatchGroup()
        group.enter()
        Thread.detachNewThread { errBox.set(errHandle.readDataToEndOfFile()); group.leave() }
        let data = out.fileHandleForReading.readDataToEndOfFile()
        group.wait()
        p.waitUntilExit()
        return Result(status: p.terminationStatus, stdout: data,
                      stderr: String(decoding: errBox.get(), as: UTF8.self))
    }

    /// sha256 of a file by `sha256sum` (coreutils) or `shasum -a 256` (macOS): fast on large files
    /// where the pure-Swift digest in a debug build is not.
    static func sha256(file: String) throws(EvaluationError) -> String {
        let r: Result
        if which("sha256sum") != nil { r = try run("sha256sum", [file]) } else { r = try run("shasum", ["-a", "256", file]) }
        guard r.status == 0, let hex = String(decoding: r.stdout, as: UTF8.self).split(separator: " ").first else {
            throw .data("cannot hash \(file): \(r.stderr)")
        }
        return String(hex)
    }

    /// gunzip through `gzip -dc`: swift-corelibs-foundation has no gzip decoder and zlib is not
    /// linked by this target.
    static func gunzip(file: String) throws(EvaluationError) -> Data {
        let r = try run("gzip", ["-dc", file])
        guard r.status == 0 else { throw .data("gzip -dc \(file) failed: \(r.stderr)") }
        return r.stdout
    }
}

final class DataBox: @unchecked Sendable {
    private let lock = NSLock()
    private var data = Data()
    func set(_ d: Data) { lock.lock(); data = d; lock.unlock() }
    func get() -> Data { lock.lock(); defer { lock.unlock() }; return data }
}
