import Foundation
import Testing
@testable import Server

private let openAIAvailable: Bool = {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    p.arguments = ["python3", "-c", "import openai"]
    p.standardOutput = FileHandle.nullDevice
    p.standardError = FileHandle.nullDevice
    guard (try? p.run()) != nil else { return false }
    p.waitUntilExit()
    return p.terminationStatus == 0
}()

/// The official `openai` Python client, unchanged, against the server (tools/setup-system pins
/// and installs it; in CI its absence is a failure, elsewhere a skip).
@Suite struct OpenAIClientTests {
    @Test(.enabled(if: openAIAvailable || ProcessInfo.processInfo.environment["CI"] != nil,
                   "python3 -m pip install openai==3.51.0 (tools/setup-system does)"))
    func openAIPythonClient() throws {
        #expect(openAIAvailable, "the openai package is not installed")
        let s = try TestServer()
        defer { #expect(s.stop()) }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["python3", repositoryRoot + "/tools/test_openai_client.py", "http://127.0.0.1:\(s.port)/v1"]
        let out = Pipe()
        p.standardOutput = out
        p.standardError = out
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        let text = String(decoding: data, as: UTF8.self)
        #expect(p.terminationStatus == 0, "\(text)")
    }

    /// curl, the other real client.
    @Test func curl() throws {
        let s = try TestServer()
        defer { #expect(s.stop()) }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["curl", "-sS", "-N", "http://127.0.0.1:\(s.port)/v1/chat/completions",
                       "-d", #"{"messages":[{"role":"user","content":"hi"}],"max_tokens":4,"temperature":0,"stream":true}"#]
        let out = Pipe()
        p.standardOutput = out
        guard (try? p.run()) != nil else { return }
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        let text = String(decoding: data, as: UTF8.self)
        #expect(p.terminationStatus == 0)
        #expect(text.hasSuffix("data: [DONE]\n\n"), "\(text)")
    }
}
