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
        let shared = fixture["contexts"]?.objectValue ?? OrderedObject()
        return try (fixture["cases"]?.arrayValue ?? []).map { record in
            guard let r = record.objectValue, let name = r["name"]?.stringValue, let template = r["template"]?.stringValue else {
                throw FixtureError.malformed("units")
            }
            var context: [String: Value] = [:]
            // A context is inline, or the name of one in "contexts".
            let contextValue = r["context"]?.stringValue.flatMap { shared[$0] } ?? r["context"]
            for (k, v) in contextValue?.objectValue?.pairs ?? [] { context[k] = v }
            return UnitCase(name: name, template: template, context: context, expectation: try Expectation(r))
        }
    }
}

@Suite struct UnitCaseTests {
    /// Cases where this interpreter knowingly differs from jinja2, and why. They only have to
    /// end without a crash (a string or a TemplateError).
    static let knownDivergences: [String: String] = [
        "error_int_overflow_free": "integers are 64-bit; Python's are unbounded, so 2 ** 63 raises here",
        "expr_random_0638": "no Markup type: `escape` always escapes, so escaping twice escapes twice",
    ]

    @Test(arguments: try UnitCase.all())
    func rendersLikeJinja2(_ c: UnitCase) {
        if Self.knownDivergences[c.name] != nil {
            do { _ = try Template(c.template).render(c.context) } catch is TemplateError {} catch {
                Issue.record("non-template error \(error)")
            }
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
