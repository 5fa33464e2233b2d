// Malformed templates give a typed error with a position, never a crash; runtime extras that
// fixtures cannot pin (the clock) are checked here.

import Foundation
import Jinja
import Testing
import Tokenizers

@Suite struct RobustnessTests {
    static let malformed: [(source: String, line: Int)] = [
        ("{% if x %}", 1),
        ("a\n{% for m in messages %}{{ m }}", 2),
        ("{{ x | nope }}", 1),
        ("{{ 1 + }}", 1),
        ("{% if %}{% endif %}", 1),
        ("line\n\n{{ [1, 2 }}", 3),
        ("{% set ns.x %}", 1),
        ("{% macro %}", 1),
        ("{{ 'unterminated }}", 1),
        ("{# open comment", 1),
        ("{% endfor %}", 1),
        ("{% for x in %}{% endfor %}", 1),
        ("{{ x is }}", 1),
        ("{{ x[ }}", 1),
        ("{{ x. }}", 1),
        ("{% break %}", 1),
    ]

    @Test(arguments: malformed.indices)
    func malformedTemplateThrowsSyntaxError(_ index: Int) {
        let (source, line) = Self.malformed[index]
        do {
            _ = try Template(source)
            Issue.record("parsed \(source.debugDescription)")
        } catch let error as TemplateError {
            #expect(error.kind == .syntax, "\(error)")
            #expect(error.line == line, "\(error)")
            #expect(error.column >= 1)
        } catch {
            Issue.record("unexpected error type \(error)")
        }
    }

    /// Every prefix of every fixture template either renders or throws a TemplateError.
    @Test func truncatedTemplatesNeverCrash() throws {
        let context: [String: Value] = [
            "messages": [["role": "system", "content": "S"], ["role": "user", "content": "Hi"]],
            "add_generation_prompt": true, "bos_token": "<s>", "eos_token": "</s>", "tools": .none,
        ]
        for file in try Fixtures.chatTemplateFiles() {
            let source = try Fixtures.load(file)["template"]!.stringValue!
            let scalars = Array(source.unicodeScalars)
            for end in stride(from: 0, to: scalars.count, by: 3) {
                var prefix = ""
                prefix.unicodeScalars.append(contentsOf: scalars[..<end])
                do {
                    _ = try Template(prefix).render(context)
                } catch is TemplateError {
                    // expected for most prefixes
                }
            }
        }
    }

    @Test func raiseExceptionSurfacesTheTemplateMessage() throws {
        let template = try Template("{% if messages | length == 0 %}{{ raise_exception('No messages given!') }}{% endif %}")
        let error = #expect(throws: TemplateError.self) { try template.render(["messages": []]) }
        #expect(error?.kind == .raised)
        #expect(error?.message == "No messages given!")
        #expect(error?.line == 1)
    }

    @Test func strftimeNowFormatsTheCurrentTime() throws {
        let year = Calendar.current.component(.year, from: Date())
        let rendered = try Template("{{ strftime_now('%Y') }}|{{ strftime_now('%d %b %Y') | length }}").render([:])
        let parts = rendered.split(separator: "|")
        #expect(Int(parts[0]).map { abs($0 - year) <= 1 } == true)
        #expect(parts[1] == "11")
    }

    @Test func jsonRoundTripKeepsKeyOrder() throws {
        let text = #"{"z": 1, "a": [true, null, 2.5, "é\n"], "m": {}}"#
        let value = try Value(json: text)
        #expect(try value.jsonString() == text)
    }

    @Test func valueLiteralsBuildContexts() throws {
        let out = try Template("{{ user.name }} has {{ items | length }} items: {{ items | join(', ') }}")
            .render(["user": ["name": "Ada"], "items": ["x", 2, 3.5, true, nil]])
        #expect(out == "Ada has 5 items: x, 2, 3.5, True, None")
    }
}
