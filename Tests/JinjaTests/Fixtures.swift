// Loads the fixtures tools/gen_chat_template_fixtures.py writes (expected output from jinja2 and
// transformers; see each file's "generator" for versions).

import Foundation
import Jinja

enum Fixtures {
    static let directory = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/chat_templates")

    static func load(_ name: String) throws -> OrderedObject {
        let data = try Data(contentsOf: directory.appendingPathComponent(name + ".json"))
        guard case .object(let object) = try Value(json: String(decoding: data, as: UTF8.self)) else {
            throw FixtureError.malformed(name)
        }
        return object
    }

    /// Every chat-template fixture file except the unit cases.
    static func chatTemplateFiles() throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: directory.path)
            .filter { $0.hasSuffix(".json") && $0 != "units.json" }
            .map { String($0.dropLast(5)) }
            .sorted()
    }

    static func kind(_ name: String) -> TemplateError.Kind? {
        switch name {
        case "syntax": return .syntax
        case "undefined": return .undefined
        case "type": return .type
        case "raised": return .raised
        case "security": return .security
        default: return nil
        }
    }
}

enum FixtureError: Error {
    case malformed(String)
}

extension Value {
    var stringValue: String? { if case .string(let s) = self { return s } else { return nil } }
    var arrayValue: [Value]? { if case .array(let a) = self { return a } else { return nil } }
    var objectValue: OrderedObject? { if case .object(let o) = self { return o } else { return nil } }
    var boolValue: Bool? { if case .bool(let b) = self { return b } else { return nil } }
    var intValue: Int? { if case .int(let i) = self { return i } else { return nil } }
}

/// What a fixture case expects: exact output, or an error of a kind (and, for syntax errors, line).
enum Expectation: Sendable {
    case output(String)
    case error(TemplateError.Kind, line: Int?, message: String)

    init(_ record: OrderedObject) throws {
        if let expected = record["expected"]?.stringValue {
            self = .output(expected)
        } else if let error = record["error"]?.objectValue, let kind = Fixtures.kind(error["kind"]?.stringValue ?? "") {
            self = .error(kind, line: error["line"]?.intValue, message: error["message"]?.stringValue ?? "")
        } else {
            throw FixtureError.malformed("case without expected or error")
        }
    }
}

/// Render, then compare with an expectation byte for byte.
func check(_ expectation: Expectation, _ render: () throws -> String, sourceLocation: SourceLocation = #_sourceLocation) {
    switch expectation {
    case .output(let expected):
        do {
            let rendered = try render()
            #expect(Array(rendered.utf8) == Array(expected.utf8),
                    "rendered \(rendered.debugDescription)\nexpected \(expected.debugDescription)",
                    sourceLocation: sourceLocation)
        } catch {
            Issue.record("unexpected error \(error); expected \(expected.debugDescription)", sourceLocation: sourceLocation)
        }
    case .error(let kind, let line, let message):
        do {
            let rendered = try render()
            Issue.record("rendered \(rendered.debugDescription); jinja2 raised \(kind): \(message)", sourceLocation: sourceLocation)
        } catch let error as TemplateError {
            #expect(error.kind == kind, "\(error) — jinja2 raised \(kind): \(message)", sourceLocation: sourceLocation)
            if kind == .raised { #expect(error.message == message, sourceLocation: sourceLocation) }
            if let line { #expect(error.line == line, "\(error) — jinja2 said line \(line)", sourceLocation: sourceLocation) }
        } catch {
            Issue.record("non-template error \(error)", sourceLocation: sourceLocation)
        }
    }
}

import Testing
