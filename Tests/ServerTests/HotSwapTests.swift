import Foundation
import LanguageModel
import Testing
import Transfer
@testable import Server

/// Hot-swap under load (issue 6): while 16 clients stream from base and from a variant, the
/// variant is replaced 50 times (alternating two deltas) and then deleted. No request fails,
/// and every response is exactly the text of the variant it was admitted with.
@Suite struct HotSwapTests {
    @Test func replaceFiftyTimesUnderSixteenClients() throws {
        let helper = VariantAPITests()
        try helper.writeDelta("a.safetensors", scale: 0.5)
        try helper.writeDelta("b.safetensors", scale: -0.5)
        let s = try TestServer { $0.adminToken = VariantAPITests.token; $0.deltaDirectory = helper.deltaDir; $0.stepDelay = 0.001; $0.threads = 1 }
        defer { #expect(s.stop()) }
        let bounds: [String: Any] = ["max_abs_value": "inf", "max_relative_norm": "inf"]
        func put(_ file: String) throws -> Int {
            try helper.admin(s, "PUT", "/v1/variants/v", ["delta": file, "bounds": bounds]).status
        }
        // The three possible answers, measured alone.
        #expect(try put("b.safetensors") == 200)
        let textB = helper.text(try helper.complete(s, model: "v"))
        #expect(try put("a.safetensors") == 200)
        let textA = helper.text(try helper.complete(s, model: "v"))
        let textBase = helper.text(try helper.complete(s, model: "base"))
        #expect(textA != textB && textA != textBase)

        let stop = Flag()
        let failures = Counter(), served = Counter()
        let group = DispatchGroup()
        for client in 0..<16 {
            group.enter()
            Thread.detachNewThread {
                defer { group.leave() }
                let model = client % 2 == 0 ? "v" : "base"
                while !stop.isSet {
                    let body: [String: Any] = ["prompt": "hello", "max_tokens": 8, "temperature": 0, "ignore_eos": true,
                                               "model": model, "stream": true]
                    let r: HTTPResponse
                    do { r = try s.post("/v1/completions", body) } catch {
                        failures.add("\(model): request failed: \(error)")
                        continue
                    }
                    guard r.status == 200 else {
                        failures.add("\(model): status \(r.status): \(r.text.prefix(200))")
                        continue
                    }
                    var text = "", names: Set<String> = []
                    for event in r.events where event != "[DONE]" {
                        guard let obj = (try? JSONSerialization.jsonObject(with: Data(event.utf8))) as? [String: Any] else { continue }
                        if let m = obj["model"] as? String { names.insert(m) }
                        if obj["error"] != nil { failures.add("\(model): error event \(event)") }
                        text += ((obj["choices"] as? [[String: Any]])?.first?["text"] as? String) ?? ""
                    }
                    let allowed = model == "v" ? [textA, textB] : [textBase]
                    if names != [model] || !allowed.contains(text) { failures.add("\(model): names \(names), text \(text.debugDescription)") }
                    served.add("")
                }
            }
        }
        for i in 0..<50 {
            #expect(try put(i % 2 == 0 ? "b.safetensors" : "a.safetensors") == 200)
            Thread.sleep(forTimeInterval: 0.01)
        }
        stop.set()
        // Every client finishes its last request first: one still about to send for "v" when the
        // variant goes would (rightly) get 404.
        group.wait()
        #expect(try helper.admin(s, "DELETE", "/v1/variants/v").status == 200)
        #expect(failures.items.isEmpty, "\(failures.items.prefix(5))")
        #expect(served.items.count >= 16)
    }
}

final class Flag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    func set() { lock.lock(); value = true; lock.unlock() }
    var isSet: Bool { lock.lock(); defer { lock.unlock() }; return value }
}

final class Counter: @unchecked Sendable {
    private let lock = NSLock()
    private var list: [String] = []
    func add(_ s: String) { lock.lock(); list.append(s); lock.unlock() }
    var items: [String] { lock.lock(); defer { lock.unlock() }; return list }
}
