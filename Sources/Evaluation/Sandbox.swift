import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Runs untrusted Python (generated code and its tests) in a separate process.
///
/// `bubblewrap` mode (DESIGN.md "Evaluation sandbox"): bwrap with new IPC, PID, network, UTS and
/// cgroup namespaces (no user namespace: as root it is not needed, and inside one only uid 0 is
/// mapped so the uid drop below would fail), a read-only `/usr` and the Python interpreter's own
/// tree, a private size-capped `/tmp` tmpfs, nothing else of the host; then `setpriv` drops to
/// an unprivileged uid with no capabilities and `no_new_privs` (root ignores RLIMIT_NPROC), and
/// `prlimit` sets CPU, address-space, file-size, process and open-file limits before exec'ing
/// Python. The parent enforces the wall-clock timeout by killing bwrap, whose PID namespace takes
/// every descendant with it.
///
/// `rlimitOnly` mode (weaker, only on request): the same uid drop (when root) and limits, in a
/// new process group killed on timeout, in a fresh temporary directory — but no namespaces: the
/// program sees the host's files (read-only for the unprivileged uid where permissions say so)
/// and the network.
public struct Sandbox: Sendable {
    public enum Isolation: String, Sendable, Codable { case bubblewrap, rlimitOnly = "rlimit-only" }

    public struct Limits: Sendable, Codable {
        public var cpuSeconds = 10
        public var addressSpaceBytes = 1 << 30
        public var fileSizeBytes = 16 << 20
        public var processes = 32
        public var openFiles = 64
        public var tmpfsBytes = 64 << 20
        public var wallSeconds = 20.0
        public var outputBytes = 64 << 10
        public init() {}
    }

    public struct Outcome: Sendable {
        public var exitStatus: Int32?
        public var signal: Int32?
        public var timedOut: Bool
        public var output: String
        public var seconds: Double
        public var passed: Bool { exitStatus == 0 && !timedOut }
    }

    public let isolation: Isolation
    public let limits: Limits
    /// The real interpreter (not a pyenv shim) and its installation prefix.
    public let python: String
    public let pythonPrefix: String
    let bwrap: String?
    let setpriv: String?
    let prlimit: String
    /// First uid of the unprivileged range; slot i runs as `baseUID + i`, so concurrent runs do
    /// not share one RLIMIT_NPROC count.
    public var baseUID: UInt32 { 61_000 }

    /// Why the weaker mode runs, when it does.
    public let fallbackReason: String?

    private init(isolation: Isolation, limits: Limits, python: String, pythonPrefix: String,
                 bwrap: String?, setpriv: String?, prlimit: String, fallbackReason: String?) {
        self.isolation = isolation; self.limits = limits; self.python = python
        self.pythonPrefix = pythonPrefix; self.bwrap = bwrap; self.setpriv = setpriv
        self.prlimit = prlimit; self.fallbackReason = fallbackReason
    }

    /// Finds the tools and the interpreter and checks that bubblewrap really runs Python here.
    /// `allowWeaker` permits `rlimitOnly` when bubblewrap is missing or fails; otherwise that is an
    /// error. `forceWeaker` skips bubblewrap (tests of the weaker mode).
    public init(python: String = "python3", limits: Limits = Limits(), allowWeaker: Bool = false,
                forceWeaker: Bool = false) throws(EvaluationError) {
        let probe = try Subprocess.run(python, ["-c", "import os,sys;print(os.path.realpath(sys.executable));print(sys.base_prefix)"])
        let lines = String(decoding: probe.stdout, as: UTF8.self).split(separator: "\n").map(String.init)
        guard probe.status == 0, lines.count == 2 else { throw .sandbox("cannot run \(python): \(probe.stderr)") }
        guard let prlimit = Subprocess.which("prlimit") else {
            throw .missingTool("prlimit", hint: "Debian package util-linux")
        }
        let setpriv = Subprocess.which("setpriv")
        if getuid() == 0 && setpriv == nil { throw .missingTool("setpriv", hint: "Debian package util-linux") }
        var reason: String
        if !forceWeaker, let bwrap = Subprocess.which("bwrap") {
            let strong = Sandbox(isolation: .bubblewrap, limits: limits, python: lines[0], pythonPrefix: lines[1],
                                 bwrap: bwrap, setpriv: setpriv, prlimit: prlimit, fallbackReason: nil)
            let check = strong.run(program: "print('ok')")
            if check.passed && check.output.trimmingCharacters(in: .whitespacesAndNewlines) == "ok" {
                self = strong
                return
            }
            reason = "bubblewrap is installed but cannot run Python here: \(check.output.prefix(400))"
        } else {
            reason = forceWeaker ? "weaker mode forced" : "bubblewrap (bwrap) is not installed"
        }
        guard allowWeaker else {
            throw .sandbox("\(reason); code tasks refuse to run without it (hint: apt-get install bubblewrap, or pass --allow-weak-sandbox for rlimits only, no namespaces)")
        }
        let weak = Sandbox(isolation: .rlimitOnly, limits: limits, python: lines[0], pythonPrefix: lines[1],
                           bwrap: nil, setpriv: setpriv, prlimit: prlimit, fallbackReason: reason)
        let check = weak.run(program: "print('ok')")
        guard check.passed else {
            throw .sandbox("the rlimit-only sandbox cannot run \(lines[0]) as uid \(weak.baseUID): \(check.output.prefix(300)) (hint: an interpreter under /root is not readable by an unprivileged uid; pass --python /usr/bin/python3)")
        }
        self = weak
    }

    /// A one-line description for reports.
    public var description: String {
        let l = limits
        let base = isolation == .bubblewrap
            ? "bubblewrap (pid/net/ipc/uts namespaces, read-only /usr and \(pythonPrefix), \(l.tmpfsBytes >> 20) MiB tmpfs /tmp)"
            : "rlimit-only (no namespaces: host files visible, network reachable)"
        let who = getuid() == 0 ? "uid \(baseUID)+slot via setpriv" : "uid \(getuid())"
        return "\(base); \(who); cpu \(l.cpuSeconds) s, as \(l.addressSpaceBytes >> 20) MiB, fsize \(l.fileSizeBytes >> 20) MiB, nproc \(l.processes), nofile \(l.openFiles), wall \(l.wallSeconds) s"
    }

    func commandLine(slot: Int, programDir: String) -> [String] {
        let uid = baseUID + UInt32(slot)
        var inner: [String] = []
        if getuid() == 0, let setpriv {
            inner += [setpriv, "--reuid=\(uid)", "--regid=\(uid)", "--clear-groups", "--no-new-privs",
                      "--inh-caps=-all", "--bounding-set=-all", "--"]
        }
        let l = limits
        inner += [prlimit, "--cpu=\(l.cpuSeconds)", "--as=\(l.addressSpaceBytes)", "--fsize=\(l.fileSizeBytes)",
                  "--nproc=\(l.processes)", "--nofile=\(l.openFiles)", "--core=0", "--",
                  python, "-I", "-B"]
        guard isolation == .bubblewrap, let bwrap else {
            // env -C: the program starts in its own temporary directory, not the caller's.
            return ["/usr/bin/env", "-C", programDir] + inner + [programDir + "/main.py"]
        }
        var args = [bwrap, "--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts", "--unshare-cgroup-try",
                    "--die-with-parent", "--new-session", "--ro-bind", "/usr", "/usr"]
        // Merged-/usr systems have /bin, /lib… as symlinks into /usr; others are bound read-only.
        for top in ["/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"] {
            if let dest = try? FileManager.default.destinationOfSymbolicLink(atPath: top) {
                args += ["--symlink", dest, top]
            } else if FileManager.default.fileExists(atPath: top) {
                args += ["--ro-bind", top, top]
            }
        }
        // The interpreter's tree at its own path (its prefix may be compiled in). bwrap creates
        // missing parents 0700, which the unprivileged uid cannot cross: create them 0755.
        if !pythonPrefix.hasPrefix("/usr/") && pythonPrefix != "/usr" {
            var parent = ""
            for c in pythonPrefix.split(separator: "/").dropLast() {
                parent += "/" + c
                args += ["--perms", "0755", "--dir", parent]
            }
            args += ["--ro-bind", pythonPrefix, pythonPrefix]
        }
        args += ["--proc", "/proc", "--dev", "/dev",
                 "--size", String(limits.tmpfsBytes), "--perms", "1777", "--tmpfs", "/tmp",
                 "--ro-bind", programDir, "/job", "--chdir", "/tmp",
                 "--clearenv", "--setenv", "PATH", "/usr/bin:/bin", "--setenv", "HOME", "/tmp",
                 "--setenv", "LANG", "C.UTF-8", "--"]
        args += inner
        return args + ["/job/main.py"]
    }

    /// Runs `program` as `main.py` and reports how it ended. `slot` picks the uid (use distinct
    /// slots for concurrent runs).
    public func run(program: String, slot: Int = 0) -> Outcome {
        let start = Date()
        let fm = FileManager.default
        let dir = NSTemporaryDirectory() + "graft-sandbox-\(getpid())-\(slot)-\(UUID().uuidString.prefix(8))"
        defer { try? fm.removeItem(atPath: dir) }
        do {
            try fm.createDirectory(atPath: dir, withIntermediateDirectories: true,
                                   attributes: [.posixPermissions: 0o755])
            try Data(program.utf8).write(to: URL(fileURLWithPath: dir + "/main.py"))
            try fm.setAttributes([.posixPermissions: 0o644], ofItemAtPath: dir + "/main.py")
        } catch {
            return Outcome(exitStatus: nil, signal: nil, timedOut: false, output: "sandbox setup failed: \(error)", seconds: 0)
        }
        let argv = commandLine(slot: slot, programDir: dir)
        return spawnAndWait(argv, directory: dir, start: start)
    }

    private func spawnAndWait(_ argv: [String], directory: String, start: Date) -> Outcome {
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else {
            return Outcome(exitStatus: nil, signal: nil, timedOut: false, output: "pipe failed", seconds: 0)
        }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, fds[1], 1)
        posix_spawn_file_actions_adddup2(&actions, fds[1], 2)
        posix_spawn_file_actions_addclose(&actions, fds[0])
        posix_spawn_file_actions_addclose(&actions, fds[1])
        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }
        // Own process group, so a timeout can kill every descendant in rlimit-only mode.
        // Threads of this process (libdispatch's) block signals; the child must not inherit that
        // mask, or SIGXCPU and SIGTERM would not reach it.
        posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        posix_spawnattr_setpgroup(&attr, 0)
        var noSignals = sigset_t(), allSignals = sigset_t()
        sigemptyset(&noSignals)
        sigfillset(&allSignals)
        posix_spawnattr_setsigmask(&attr, &noSignals)
        posix_spawnattr_setsigdefault(&attr, &allSignals)
        let cArgs: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) } + [nil]
        defer { cArgs.forEach { free($0) } }
        let envStrings = ["PATH=/usr/bin:/bin", "LANG=C.UTF-8", "HOME=" + directory]
        let env: [UnsafeMutablePointer<CChar>?] = envStrings.map { (s: String) -> UnsafeMutablePointer<CChar>? in strdup(s) } + [nil]
        defer { env.forEach { free($0) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, argv[0], &actions, &attr, cArgs, env)
        close(fds[1])
        guard rc == 0 else {
            close(fds[0])
            return Outcome(exitStatus: nil, signal: nil, timedOut: false, output: "spawn \(argv[0]) failed: \(rc)", seconds: 0)
        }
        var output = Data()
        var buffer = [UInt8](repeating: 0, count: 16384)
        let deadline = start.addingTimeInterval(limits.wallSeconds)
        var timedOut = false, status: Int32 = 0, reaped = false, eof = false
        _ = fcntl(fds[0], F_SETFL, fcntl(fds[0], F_GETFL) | O_NONBLOCK)
        while !(reaped && eof) {
            if !eof {
                var p = pollfd(fd: fds[0], events: Int16(POLLIN), revents: 0)
                _ = poll(&p, 1, 50)
                while true {
                    let n = read(fds[0], &buffer, buffer.count)
                    if n > 0 {
                        if output.count < limits.outputBytes { output.append(contentsOf: buffer[0..<min(n, limits.outputBytes - output.count)]) }
                    } else {
                        if n == 0 { eof = true }
                        break
                    }
                }
            } else {
                usleep(5_000)
            }
            if !reaped {
                let w = waitpid(pid, &status, WNOHANG)
                if w == pid {
                    reaped = true
                    // The direct child ended; in rlimit-only mode a lingering descendant may still
                    // hold the pipe: kill the group rather than wait for it.
                    kill(-pid, SIGKILL)
                }
            }
            if !timedOut && Date() > deadline && !(reaped && eof) {
                timedOut = true
                kill(-pid, SIGKILL)
                kill(pid, SIGKILL)
            }
            if timedOut && reaped { break }
        }
        close(fds[0])
        let seconds = Date().timeIntervalSince(start)
        let exited = (status & 0x7f) == 0
        return Outcome(exitStatus: exited ? (status >> 8) & 0xff : nil, signal: exited ? nil : status & 0x7f,
                       timedOut: timedOut, output: String(decoding: output, as: UTF8.self), seconds: seconds)
    }
}
