import Foundation
import Testing
@testable import Evaluation

/// Hostile programs: none may harm the host or stop the evaluation. Runs under bubblewrap where
/// it is installed (as in CI), and the weaker rlimit-only mode is exercised too.
@Suite(.serialized) struct SandboxTests {
    static func sandbox(weak: Bool = false) throws -> Sandbox {
        var l = Sandbox.Limits()
        l.wallSeconds = 6
        l.cpuSeconds = 3
        // The weaker mode drops to an unprivileged uid without a private mount of the interpreter:
        // it needs one that uid can read (a pyenv tree under /root is not).
        let python = weak && getuid() == 0 && FileManager.default.fileExists(atPath: "/usr/bin/python3") ? "/usr/bin/python3" : "python3"
        return try Sandbox(python: python, limits: l, allowWeaker: true, forceWeaker: weak)
    }

    /// After each attack a normal program still runs and passes.
    func stillWorks(_ s: Sandbox) {
        let o = s.run(program: "print(sum(range(10)))")
        #expect(o.passed && o.output.contains("45"), "\(o)")
    }

    @Test func bubblewrapIsUsedWhenInstalled() throws {
        let s = try Self.sandbox()
        #expect(s.isolation == (bubblewrapAvailable ? .bubblewrap : .rlimitOnly), "\(s.fallbackReason ?? "")")
        if !bubblewrapAvailable { print("bubblewrap not installed: testing the rlimit-only mode only") }
    }

    @Test func refusesWithoutBubblewrapUnlessAsked() {
        #expect(throws: EvaluationError.self) { try Sandbox(allowWeaker: false, forceWeaker: true) }
    }

    @Test(arguments: [false, true]) func infiniteLoopIsStopped(weak: Bool) throws {
        guard let s = weak ? try? Self.sandbox(weak: true) : try Self.sandbox() else {
            print("skipped: no interpreter the unprivileged uid can run for the rlimit-only mode"); return
        }
        let start = Date()
        let o = s.run(program: "while True:\n    pass\n")
        #expect(!o.passed)
        #expect(Date().timeIntervalSince(start) < 8, "the CPU limit or the wall clock ends it")
        let o2 = s.run(program: "import time\ntime.sleep(100)\n")
        #expect(o2.timedOut && !o2.passed && o2.seconds < 8)
        stillWorks(s)
    }

    @Test(arguments: [false, true]) func forkBombIsContained(weak: Bool) throws {
        guard let s = weak ? try? Self.sandbox(weak: true) : try Self.sandbox() else {
            print("skipped: no interpreter the unprivileged uid can run for the rlimit-only mode"); return
        }
        let o = s.run(program: """
            import os
            n = 0
            try:
                while True:
                    if os.fork() == 0:
                        n += 1
                    else:
                        n += 1
            except OSError as e:
                print("fork refused", n, flush=True)
            import time
            time.sleep(30)
            """, slot: 7)
        #expect(!o.passed)
        #expect(o.output.contains("fork refused"), "RLIMIT_NPROC stops it: \(o.output.prefix(300))")
        stillWorks(s)
        // No process of the sandbox uid outlives the run.
        // Killed processes may linger as zombies for a moment until init reaps them.
        if getuid() == 0 {
            var alive = ""
            for _ in 0..<30 {
                let ps = try Subprocess.run("ps", ["-u", String(s.baseUID + 7), "-o", "stat=,pid="])
                alive = String(decoding: ps.stdout, as: UTF8.self).split(separator: "\n").filter { !$0.hasPrefix("Z") }.joined(separator: ",")
                if alive.isEmpty { break }
                usleep(100_000)
            }
            #expect(alive.isEmpty, "processes left: \(alive)")
        }
    }

    @Test func diskFillerHitsTheCaps() throws {
        let s = try Self.sandbox()
        let o = s.run(program: """
            import os
            chunk = b"x" * (1 << 20)
            written = 0
            try:
                with open("/tmp/fill", "wb") as f:
                    while True:
                        f.write(chunk); f.flush(); written += 1
            except OSError as e:
                print("stopped after", written, "MiB:", e)
            """)
        // RLIMIT_FSIZE (16 MiB) kills with SIGXFSZ or the write fails; either way it is bounded.
        #expect(o.output.contains("stopped after") || o.signal != nil, "\(o)")
        stillWorks(s)
    }

    @Test func hostFilesSurviveRmRf() throws {
        guard bubblewrapAvailable else { print("skipped: needs bubblewrap"); return }
        let s = try Self.sandbox()
        let canary = NSTemporaryDirectory() + "graft-canary-\(UUID().uuidString.prefix(6))"
        try Data("alive".utf8).write(to: URL(fileURLWithPath: canary))
        defer { try? FileManager.default.removeItem(atPath: canary) }
        let o = s.run(program: """
            import os, shutil, sys
            print(os.path.exists(\(String(reflecting: canary))), flush=True)
            for p in [\(String(reflecting: canary)), "/usr/bin/env", sys.prefix + "/bin/python3", "/job/main.py"]:
                try:
                    os.remove(p); print("removed", p, flush=True)
                except OSError as e:
                    print("refused", p, e.errno, flush=True)
            shutil.rmtree("/", ignore_errors=True)
            print("done")
            """)
        #expect(o.output.contains("False"), "the host's /tmp is not visible: \(o.output)")
        #expect(!o.output.contains("removed /usr") && !o.output.contains("removed " + s.pythonPrefix))
        #expect(FileManager.default.fileExists(atPath: canary))
        #expect(FileManager.default.fileExists(atPath: "/usr/bin/env"))
        #expect(FileManager.default.fileExists(atPath: s.python))
        stillWorks(s)
    }

    @Test func noNetwork() throws {
        guard bubblewrapAvailable else { print("skipped: needs bubblewrap"); return }
        let s = try Self.sandbox()
        let o = s.run(program: """
            import socket
            for host in [("127.0.0.1", 22), ("1.1.1.1", 80), ("10.0.0.1", 80)]:
                s = socket.socket(); s.settimeout(2)
                try:
                    s.connect(host); print("connected", host)
                except OSError as e:
                    print("blocked", host, e.errno)
            print(socket.if_nameindex())
            """)
        #expect(!o.output.contains("connected"), "\(o.output)")
        #expect(o.output.contains("blocked ('1.1.1.1', 80)"))
    }

    @Test func runsAsUnprivilegedUser() throws {
        guard getuid() == 0 else { print("skipped: the uid drop applies when run as root"); return }
        let s = try Self.sandbox()
        let o = s.run(program: "import os, resource\nprint(os.getuid(), os.getgid(), resource.getrlimit(resource.RLIMIT_NPROC)[0])", slot: 3)
        #expect(o.output.trimmingCharacters(in: .whitespacesAndNewlines) == "\(s.baseUID + 3) \(s.baseUID + 3) 32", "\(o.output)")
    }

    @Test func fakePassWithoutTestsFails() throws {
        let s = try Self.sandbox()
        let task = CodeTask(id: "t", prompt: "", entryPoint: "f", canonicalSolution: "def f():\n    return 1\n",
                            test: "def check(c):\n    assert c() == 1\n", setup: "", testList: ["assert f() == 1"])
        #expect(CodeExecution.check(task: task, kind: .humaneval, program: task.canonicalSolution, sandbox: s).passed)
        #expect(CodeExecution.check(task: task, kind: .mbpp, program: task.canonicalSolution, sandbox: s).passed)
        let cheat = "import sys\nsys.exit(0)\ndef f():\n    return 2\n"
        #expect(!CodeExecution.check(task: task, kind: .humaneval, program: cheat, sandbox: s).passed)
        #expect(!CodeExecution.check(task: task, kind: .mbpp, program: "def f():\n    return 2\n", sandbox: s).passed)
    }
}
