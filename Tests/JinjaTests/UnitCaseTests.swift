// Small templates for the lexer, parser, each filter, test and method, with jinja2's output
// (Tests/Fixtures/chat_templates/units.json, from the environment transformers compiles).

import Jinja
import Testing

struct UnitCase: Sendable, CustomTestStringConvertible {
    let name: String
    let template: String
    let context: [String: Value]
    let expectation: Expectation

    var testDescription: String { name }

    static func all() throws -> [UnitCase] {
        let fixture = try Fixtures.load("units")
        return try (fixture["cases"]?.arrayValue ?? []).map { record in
            guard let r = record.objectValue, let name = r["name"]?.stringValue, let template = r["template"]?.stringValue else {
                throw FixtureError.malformed("units")
            }
            var context: [String: Value] = [:]
            for (k, v) in r["context"]?.objectValue?.pairs ?? [] { context[k] = v }
            return UnitCase(name: name, template: template, context: context, expectation: try Expectation(r))
        }
    }
}

@Suite struct UnitCaseTests {
    /// Cases where this interpreter knowingly differs from jinja2, and why. They must still end in
    /// a TemplateError rather than a wrong string or a crash.
    static let knownDivergences: [String: String] = [
        "error_int_overflow_free": "integers are 64-bit; Python's are unbounded, so 2 ** 63 raises here",
    ]

    @Test(arguments: try UnitCase.all())
    func rendersLikeJinja2(_ c: UnitCase) {
        if Self.knownDivergences[c.name] != nil {
            #expect(throws: TemplateError.self) { try Template(c.template).render(c.context) }
            return
        }
        check(c.expectation) { try Template(c.template).render(c.context) }
    }

    @Test func unitFixtureIsComplete() throws {
        let names = Set(try UnitCase.all().map(\.name))
        #expect(names.count >= 170)
        for prefix in ["lex_", "parse_", "filter_", "test_", "method_", "undefined_", "error_", "syntax_"] {
            #expect(names.contains { $0.hasPrefix(prefix) }, "no \(prefix) cases")
        }
    }
}
