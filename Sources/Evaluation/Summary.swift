import Foundation

/// Paired statistics of one task: both arms' accuracies with Wilson intervals, the difference
/// B − A with a paired bootstrap interval, McNemar's exact p, and the flipped items.
public struct TaskSummary: Sendable {
    public struct ArmStats: Sendable {
        public var variant: String
        public var n: Int
        public var correct: Int
        public var accuracy: Double
        public var ci95: (Double, Double)
        public var strictAccuracy: Double?
        /// MMLU: accuracy per subject, and the macro average over subjects.
        public var perSubject: [String: (correct: Int, n: Int)]?
        public var macroAccuracy: Double?
        /// Code with samples > 1: mean unbiased pass@k over items.
        public var passAtK: [Int: Double]?
    }
    public var task: String
    public var protocolID: String
    public var itemNote: String
    public var a: ArmStats
    public var b: ArmStats?
    public var difference: Double?
    public var ci95: (Double, Double)?
    public var mcnemarP: Double?
    public var mcnemarPHolm: Double?
    public var onlyA: [String] = []
    public var onlyB: [String] = []
    public var wallSeconds: Double

    public static func make(task: EvalTask, results: [[ItemResult]], settings: EvalSettings,
                            bootstrapSeed: UInt64, wallSeconds: Double) -> TaskSummary {
        func stats(_ r: [ItemResult]) -> ArmStats {
            let c = r.filter(\.correct).count
            let n = r.count
            var s = ArmStats(variant: r.first?.variant ?? "", n: n, correct: c, accuracy: n > 0 ? Double(c) / Double(n) : 0,
                             ci95: Statistics.wilson(successes: c, n: n))
            if task.task == .gsm8k { s.strictAccuracy = n > 0 ? Double(r.filter { $0.strictCorrect == true }.count) / Double(n) : 0 }
            if task.task == .mmlu {
                var per: [String: (correct: Int, n: Int)] = [:]
                for x in r {
                    let k = x.subject ?? "?"
                    per[k, default: (0, 0)].n += 1
                    if x.correct { per[k, default: (0, 0)].correct += 1 }
                }
                s.perSubject = per
                s.macroAccuracy = per.isEmpty ? 0 : per.values.map { Double($0.correct) / Double($0.n) }.reduce(0, +) / Double(per.count)
            }
            if task.task.isCode, settings.samples > 1 {
                var pk: [Int: Double] = [:]
                for k in settings.passAtK where k <= settings.samples {
                    let vals = r.compactMap(\.samplePasses).map { Statistics.passAtK(n: $0.count, correct: $0.filter { $0 }.count, k: k) }
                    pk[k] = vals.isEmpty ? 0 : vals.reduce(0, +) / Double(vals.count)
                }
                s.passAtK = pk
            }
            return s
        }
        var summary = TaskSummary(task: task.task.rawValue, protocolID: task.protocolID, itemNote: task.itemNote,
                                  a: stats(results[0]), wallSeconds: wallSeconds)
        if results.count > 1 {
            let ra = results[0], rb = results[1]
            summary.b = stats(rb)
            let xa = ra.map { $0.correct ? 1.0 : 0.0 }, xb = rb.map { $0.correct ? 1.0 : 0.0 }
            summary.difference = summary.b!.accuracy - summary.a.accuracy
            summary.ci95 = Statistics.pairedBootstrap(a: xa, b: xb, seed: bootstrapSeed)
            for (x, y) in zip(ra, rb) where x.correct != y.correct {
                let id = results.count > 1 && Set(ra.map(\.seed)).count > 1 ? "\(x.item)#\(x.seed)" : x.item
                if x.correct { summary.onlyA.append(id) } else { summary.onlyB.append(id) }
            }
            summary.mcnemarP = Statistics.mcnemarExact(onlyA: summary.onlyA.count, onlyB: summary.onlyB.count)
        }
        return summary
    }

    func armJSON(_ s: ArmStats) -> [String: Any] {
        var o: [String: Any] = ["variant": s.variant, "accuracy": s.accuracy, "n": s.n, "correct": s.correct,
                                "ci95": [s.ci95.0, s.ci95.1]]
        if let v = s.strictAccuracy { o["strict_accuracy"] = v }
        if let per = s.perSubject {
            o["per_subject"] = Dictionary(uniqueKeysWithValues: per.map { ($0.key, ["accuracy": Double($0.value.correct) / Double($0.value.n), "n": $0.value.n]) })
            o["macro_accuracy"] = s.macroAccuracy
            o["micro_accuracy"] = s.accuracy
        }
        if let pk = s.passAtK { o["pass_at_k"] = Dictionary(uniqueKeysWithValues: pk.map { ("pass@\($0.key)", $0.value) }) }
        return o
    }

    public var json: [String: Any] {
        var o: [String: Any] = ["a": armJSON(a), "protocol": protocolID, "items": itemNote, "wall_seconds": wallSeconds]
        if let b {
            o["b"] = armJSON(b)
            o["difference"] = difference
            o["ci95"] = ci95.map { [$0.0, $0.1] }
            o["mcnemar_p"] = mcnemarP
            o["mcnemar_p_holm"] = mcnemarPHolm
            o["flips"] = ["a_only": onlyA, "b_only": onlyB]
        }
        return o
    }
}

/// Writes `summary.json`, `summary.md` and `accuracy.png` into the report directory.
public enum Report {
    /// Holm across the tasks of one run (each task's McNemar test is one hypothesis).
    public static func applyHolm(_ s: inout [TaskSummary]) {
        let idx = s.indices.filter { s[$0].mcnemarP != nil }
        let adjusted = Statistics.holm(idx.map { s[$0].mcnemarP! })
        for (i, p) in zip(idx, adjusted) { s[i].mcnemarPHolm = p }
    }

    public static func write(_ summaries: [TaskSummary], to dir: String, settings: [String: Any],
                             provenance: [String: Any]) throws(EvaluationError) -> [String] {
        var written: [String] = []
        var tasks: [String: Any] = [:]
        for s in summaries { tasks[s.task] = s.json }
        var top: [String: Any] = ["tasks": tasks, "settings": settings, "provenance": provenance]
        let plot = dir + "/accuracy.png"
        let plotNote = Self.plot(summaries, to: plot)
        top["plot"] = plotNote == nil ? "accuracy.png" : NSNull()
        if let plotNote { top["plot_skipped"] = plotNote }
        let data = try! JSONSerialization.data(withJSONObject: top, options: [.prettyPrinted, .sortedKeys])
        do {
            try data.write(to: URL(fileURLWithPath: dir + "/summary.json"))
            try Data(markdown(summaries, settings: settings, plotNote: plotNote).utf8).write(to: URL(fileURLWithPath: dir + "/summary.md"))
        } catch { throw .data("cannot write the report in \(dir): \(error)") }
        written += [dir + "/summary.json", dir + "/summary.md"]
        if plotNote == nil { written.append(plot) }
        return written
    }

    static func pct(_ x: Double) -> String { String(format: "%.2f", 100 * x) }
    static func ci(_ c: (Double, Double)) -> String { "[\(pct(c.0)), \(pct(c.1))]" }

    public static func markdown(_ summaries: [TaskSummary], settings: [String: Any], plotNote: String?) -> String {
        var md = "# graft eval\n\n"
        let two = summaries.contains { $0.b != nil }
        if two {
            let a = summaries.first?.a.variant ?? "A", b = summaries.first?.b?.variant ?? "B"
            md += "A = `\(a)`, B = `\(b)`. Accuracy in %, 95% Wilson intervals; B − A with a paired bootstrap 95% interval; McNemar's exact test, Holm-adjusted across tasks.\n\n"
            md += "| task | n | A | B | B − A | McNemar p | Holm p | A only / B only |\n|---|---|---|---|---|---|---|---|\n"
            for s in summaries {
                guard let b = s.b else { continue }
                md += "| \(s.task) | \(s.a.n) | \(pct(s.a.accuracy)) \(ci(s.a.ci95)) | \(pct(b.accuracy)) \(ci(b.ci95)) | "
                md += "\(String(format: "%+.2f", 100 * (s.difference ?? 0))) \(ci(s.ci95 ?? (0, 0))) | "
                md += "\(String(format: "%.4g", s.mcnemarP ?? 1)) | \(String(format: "%.4g", s.mcnemarPHolm ?? 1)) | \(s.onlyA.count) / \(s.onlyB.count) |\n"
            }
        } else {
            md += "| task | variant | n | accuracy % [95% CI] |\n|---|---|---|---|\n"
            for s in summaries { md += "| \(s.task) | \(s.a.variant) | \(s.a.n) | \(pct(s.a.accuracy)) \(ci(s.a.ci95)) |\n" }
        }
        md += "\n"
        for s in summaries {
            md += "## \(s.task)\n\n- items: \(s.itemNote)\n- protocol: `\(s.protocolID)`\n- wall time: \(Int(s.wallSeconds)) s\n"
            for (label, arm) in zip(["A", "B"], [s.a] + (s.b.map { [$0] } ?? [])) {
                let who = "\(label) (`\(arm.variant)`)"
                if let st = arm.strictAccuracy { md += "- \(who) strict `#### N` accuracy: \(pct(st))%\n" }
                if let m = arm.macroAccuracy { md += "- \(who) MMLU macro (mean over \(arm.perSubject?.count ?? 0) subjects) \(pct(m))%, micro \(pct(arm.accuracy))%\n" }
                if let pk = arm.passAtK { md += "- \(who) " + pk.keys.sorted().map { "pass@\($0) \(pct(pk[$0]!))%" }.joined(separator: ", ") + "\n" }
            }
            if s.b != nil {
                md += "- flipped A→B (only A right): \(s.onlyA.prefix(20).joined(separator: ", "))\(s.onlyA.count > 20 ? " …" : "")\n"
                md += "- flipped B→A (only B right): \(s.onlyB.prefix(20).joined(separator: ", "))\(s.onlyB.count > 20 ? " …" : "")\n"
            }
            md += "\n"
        }
        if let plotNote { md += "Plot skipped: \(plotNote)\n" } else { md += "![accuracy](accuracy.png)\n" }
        if let sandbox = settings["sandbox"] as? String { md += "\nSandbox: \(sandbox)\n" }
        if let notes = settings["notes"] as? [String], !notes.isEmpty {
            md += "\nProvenance notes:\n" + notes.map { "- \($0)\n" }.joined()
        }
        return md
    }

    /// A grouped bar chart with Wilson error bars, drawn by gnuplot. Returns why it was skipped.
    public static func plot(_ summaries: [TaskSummary], to path: String) -> String? {
        guard Subprocess.which("gnuplot") != nil else { return "gnuplot is not installed (apt-get install gnuplot-nox)" }
        var rows = ""
        for s in summaries {
            let b = s.b ?? s.a
            rows += "\(s.task) \(100 * s.a.accuracy) \(100 * s.a.ci95.0) \(100 * s.a.ci95.1) \(100 * b.accuracy) \(100 * b.ci95.0) \(100 * b.ci95.1)\n"
        }
        let dataFile = path + ".dat"
        defer { try? FileManager.default.removeItem(atPath: dataFile) }
        guard (try? Data(rows.utf8).write(to: URL(fileURLWithPath: dataFile))) != nil else { return "cannot write \(dataFile)" }
        let a = summaries.first?.a.variant ?? "A", b = summaries.first?.b?.variant
        let quoted = { (s: String) in "'" + s.replacingOccurrences(of: "'", with: "") + "'" }
        var script = """
        set terminal pngcairo size 800,480 font ',11'
        set output \(quoted(path))
        set title 'Accuracy with 95% Wilson intervals'
        set ylabel 'accuracy (%)'
        set yrange [0:100]
        set style data histogram
        set style histogram errorbars gap 2 lw 1
        set style fill solid 0.7 border -1
        set key top right
        set grid ytics

        """
        script += "plot \(quoted(dataFile)) using 2:3:4:xtic(1) title \(quoted("A: " + a))"
        if let b { script += ", '' using 5:6:7 title \(quoted("B: " + b))" }
        script += "\n"
        guard let r = try? Subprocess.run("gnuplot", [], stdin: Data(script.utf8)) else { return "gnuplot did not run" }
        return r.status == 0 && FileManager.default.fileExists(atPath: path) ? nil : "gnuplot failed: \(r.stderr.prefix(300))"
    }
}
