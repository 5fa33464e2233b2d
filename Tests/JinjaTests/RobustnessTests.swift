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

/// Hostile templates end in a TemplateError, not a stack overflow or a failed allocation.
@Suite struct ResourceLimitTests {
    func expectError(_ source: String, _ context: [String: Value] = [:], sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(throws: TemplateError.self, sourceLocation: sourceLocation) { try Template(source).render(context) }
    }

    @Test func deepNestingIsRefused() {
        expectError("{{ " + String(repeating: "(", count: 20_000) + "1" + String(repeating: ")", count: 20_000) + " }}")
        expectError("{{ " + String(repeating: "[", count: 20_000) + " }}")
        expectError("{{ 1" + String(repeating: " + 1", count: 20_000) + " }}")
        expectError("{{ x" + String(repeating: ".a", count: 20_000) + " }}")
        expectError("{{ x" + String(repeating: " | trim", count: 20_000) + " }}")
        expectError("{{ " + String(repeating: "not ", count: 20_000) + "x }}")
        expectError("{{ " + String(repeating: "-", count: 20_000) + "1 }}")
        expectError(String(repeating: "{% if true %}", count: 20_000))
    }

    @Test func nestingRealTemplatesUseIsAccepted() throws {
        let source = "{{ " + String(repeating: "(", count: 40) + "1" + String(repeating: ")", count: 40) + " }}"
            + "{{ 'a'" + String(repeating: " ~ 'a'", count: 60) + " }}"
            + String(repeating: "{% if true %}", count: 30) + "x" + String(repeating: "{% endif %}", count: 30)
        #expect(try Template(source).render([:]).hasSuffix("x"))
    }

    @Test func hugeResultsAreRefused() {
        expectError("{{ 'abc' * 10 ** 12 }}")
        expectError("{{ [1, 2] * 10 ** 12 }}")
        expectError("{{ 'x'.center(10 ** 12) }}")
        expectError("{{ 'x' | center(10 ** 12) }}")
        expectError("{{ [1] | tojson(indent=10 ** 12) }}")
        expectError("{{ range(10 ** 9) | list }}")
    }

    @Test func runawayRecursionIsRefused() {
        expectError("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}")
        // A value nested far deeper than anything printable.
        let deep = "{% set ns = namespace(v=[]) %}{% for i in range(5000) %}{% set ns.v = [ns.v] %}{% endfor %}"
        #expect(throws: TemplateError.self) { try Template(deep + "{{ ns.v | tojson }}").render([:]) }
        #expect((try? Template(deep + "{{ ns.v }}").render([:])) != nil)
        #expect(throws: Jinja.JSONParseError.self) { try Value(json: String(repeating: "[", count: 20_000)) }
    }
}
