import CHTTPParser
import CLibUV
import Foundation
import TensorCore
import Testing

/// Weights in a dtype, stored as raw bytes so the kernels see exactly what a file holds.
private func makeWeights(_ dtype: DType, rows: Int, cols: Int, seed: UInt64) -> ([UInt8], [Double]) {
    var state = seed
    var bytes: [UInt8] = []
    var exact: [Double] = []
    for _ in 0..<(rows * cols) {
        state = state &* 6364136223846793005 &+ 1442695040888963407
        let v = Float(Int64(bitPattern: state) >> 40) / Float(1 << 23)   // about ±1
        switch dtype {
        case .bf16:
            let b = floatToBF16(v)
            bytes += [UInt8(b & 0xFF), UInt8(b >> 8)]
            exact.append(Double(bf16ToFloat(b)))
        case .f16:
            let h = floatToF16(v)
            bytes += [UInt8(h & 0xFF), UInt8(h >> 8)]
            exact.append(Double(f16ToFloat(h)))
        default:
            withUnsafeBytes(of: v.bitPattern.littleEndian) { bytes += $0 }
            exact.append(Double(v))
        }
    }
    return (bytes, exact)
}

@Suite(.serialized) struct KernelTests {
    /// out = x·Wᵀ against a double-precision reference, for every dtype, ISA and awkward shape
    /// (tails of 1..15 columns, rows not a multiple of 4, batches across the direct/panel paths).
    @Test(arguments: [DType.f32, .bf16, .f16])
    func matmulMatchesReference(dtype: DType) throws {
        defer { forceKernels(nil) }
        for isa in ["scalar", "avx2", "avx512"] where forceKernels(isa) {
            // The last three: K blocks, strips (one of 2 rows) and their prefetches in the panel path;
            // two token blocks (60 + 10 tokens of 4100 columns) in the panel and AVX2 paths; two
            // token blocks of packed activations (12 + 4 tokens of 20000 columns; with bf16
            // weights, eo512's 40 K blocks); with bf16 weights, eo512's token groups outermost
            // with no K blocks (14 tokens of 1500 columns, rows and tokens in partial tiles).
            for (rows, cols, n) in [(1, 1, 1), (5, 17, 3), (13, 33, 4), (11, 40, 5), (16, 64, 7), (9, 100, 13), (6, 7, 100), (70, 4100, 7), (30, 2100, 40), (9, 4100, 70), (9, 20000, 16), (13, 1500, 14)] {
                let (bytes, exact) = makeWeights(dtype, rows: rows, cols: cols, seed: UInt64(rows * 1000 + cols))
                let x = (0..<(n * cols)).map { Float(($0 * 37) % 23) / 11 - 1 }
                var out = [Float](repeating: .nan, count: n * rows)
                bytes.withUnsafeBytes { w in
                    let m = WeightMatrix(dtype: dtype, rows: rows, cols: cols, base: w.baseAddress!)
                    matmul(&out, ldo: rows, x, ldx: cols, n: n, m, pool: WorkerPool(threads: 2))
                }
                for t in 0..<n {
                    for r in 0..<rows {
                        var ref = 0.0
                        for k in 0..<cols { ref += exact[r * cols + k] * Double(x[t * cols + k]) }
                        let got = Double(out[t * rows + r])
                        #expect(abs(got - ref) <= 1e-5 * max(1, Double(cols).squareRoot() * 2), "\(isa) \(dtype) \(rows)×\(cols) n=\(n) [\(t),\(r)]: \(got) vs \(ref)")
                    }
                }
            }
        }
    }

    /// Each output element is bit-identical whatever the batch size, the path (direct up to 5
    /// tokens, panel for more) and the split over threads.
    @Test(arguments: [DType.bf16, .f32])
    func matmulIsBatchInvariant(dtype: DType) {
        defer { forceKernels(nil) }
        // The panel path splits a row's columns into K blocks (1000 columns: two blocks for 23
        // tokens or for 10), a matrix's rows into strips and its tokens into blocks (70 × 4100:
        // strips of 4 to 28 rows, two token blocks for 100 tokens, and K blocks of different
        // widths for 100, 98, 10 and 3 tokens). Up to 16 tokens the panel path packs the
        // activations first; 20000 columns make token blocks of 12, so 16 tokens take two.
        for isa in ["scalar", "avx2", "avx512"] where forceKernels(isa) {
            for (rows, cols, n) in [(37, 75, 23), (21, 1000, 23), (70, 4100, 100), (9, 20000, 23)] {
                let (bytes, _) = makeWeights(dtype, rows: rows, cols: cols, seed: 9)
                let x = (0..<(n * cols)).map { Float(($0 * 53) % 31) / 7 - 2 }
                func run(_ tokens: Range<Int>, threads: Int) -> [Float] {
                    var out = [Float](repeating: 0, count: tokens.count * rows)
                    bytes.withUnsafeBytes { w in
                        let m = WeightMatrix(dtype: dtype, rows: rows, cols: cols, base: w.baseAddress!)
                        Array(x[(tokens.lowerBound * cols)..<(tokens.upperBound * cols)]).withUnsafeBufferPointer { xs in
                            matmul(&out, ldo: rows, xs.baseAddress!, ldx: cols, n: tokens.count, m, pool: WorkerPool(threads: threads))
                        }
                    }
                    return out
                }
                let all = run(0..<n, threads: 1)
                #expect(run(0..<n, threads: 2) == all, "\(isa): thread split changed results")
                for t in [0, 5, 22] {
                    #expect(run(t..<(t + 1), threads: 1) == Array(all[(t * rows)..<((t + 1) * rows)]), "\(isa): token \(t) alone differs")
                }
                #expect(run(3..<6, threads: 1) == Array(all[(3 * rows)..<(6 * rows)]), "\(isa): batch of 3 differs")
                // Up to 5 tokens the direct path, from 6 the panel path; with bf16 weights from 5 to
                // 16 tokens eo512 (4 rows × 4 tokens, no panel; for 10 and 16 tokens of 1000
                // columns its token groups outermost, without K blocks).
                for (a, b) in [(0, 4), (1, 6), (4, 10)] {
                    #expect(run(a..<b, threads: 1) == Array(all[(a * rows)..<(b * rows)]), "\(isa): batch of \(b - a) differs")
                }
                #expect(run(10..<20, threads: 2) == Array(all[(10 * rows)..<(20 * rows)]), "\(isa): batch of 10 differs")
                #expect(run(7..<23, threads: 1) == Array(all[(7 * rows)..<(23 * rows)]), "\(isa): batch of 16 differs")
                #expect(run(2..<n, threads: 2) == Array(all[(2 * rows)..<(n * rows)]), "\(isa): batch of \(n - 2) differs")
            }
        }
    }

    /// bf16 activations follow the definition of AVX-512 BF16's dot product bit for bit on every
    /// path this CPU has (the instruction itself, its AVX-512 emulation, the scalar code): per
    /// lane, each 32-column chunk's odd column and then its even one, each an FMA with denormal
    /// inputs and results made zeros; then the halving tree. The values include denormals,
    /// signed zeros, products that underflow and sums that cancel; the shapes tails of 1-31
    /// columns, partial tiles, both row orders and both thread splits.
    @Test func bf16ActivationProductsFollowTheDotProductDefinition() {
        defer { forceKernels(nil); forceBF16ActivationEmulation(false) }
        func flush(_ v: Float) -> Float { v.isSubnormal ? Float(sign: v.sign, exponent: 0, significand: 0) : v }
        var state: UInt64 = 77
        func nextBits() -> UInt16 {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            let r = UInt16(truncatingIfNeeded: state >> 33)
            switch (state >> 60) & 7 {
            case 0: return r & 0x807F                     // a denormal or a signed zero
            case 1: return (r & 0x807F) | 0x0080          // the smallest normals: products underflow
            default: return (r & 0x8000) | (0x3B00 + r % 0x900)   // about 2^-9 .. 2^9
            }
        }
        // (70, 2000, 9): activations past GK_BX_X_L1 (36 KB), so rows in strips (of 32 rows here).
        // The last: every product -2^-127, flushed to -0, so every lane holds -0 after the first
        // chunk; the second chunk's padding (+0 · +0) turns lanes 1-15 into +0 and the sum is +0.
        for (rows, cols, n) in [(1, 1, 1), (5, 31, 3), (6, 33, 5), (9, 64, 4), (13, 100, 9), (17, 577, 16), (33, 1500, 6), (70, 2000, 9), (2, 34, 2)] {
            let underflow = cols == 34
            let w = (0..<(rows * cols)).map { _ in underflow ? UInt16(0x0080) : nextBits() }   // 2^-126
            let x = (0..<(n * cols)).map { _ in underflow ? UInt16(0xBF00) : nextBits() }      // -0.5
            var want = [Float](repeating: 0, count: n * rows)
            for t in 0..<n {
                for r in 0..<rows {
                    var acc = [Float](repeating: 0, count: 16)
                    for c in stride(from: 0, to: cols, by: 32) {
                        for l in 0..<16 {
                            for k in [c + 2 * l + 1, c + 2 * l] {
                                // Past the end: +0 · +0 (which turns a -0 accumulator into +0).
                                let p = k < cols ? flush(bf16ToFloat(w[r * cols + k])) : 0
                                let q = k < cols ? flush(bf16ToFloat(x[t * cols + k])) : 0
                                acc[l] = flush(acc[l].addingProduct(p, q))
                            }
                        }
                    }
                    for h in [8, 4, 2, 1] { for l in 0..<h { acc[l] = acc[l] + acc[l + h] } }
                    want[t * rows + r] = acc[0]
                }
            }
            for (isa, emulate) in [("avx512", false), ("avx512", true), ("avx2", false), ("scalar", false)] where forceKernels(isa) {
                forceBF16ActivationEmulation(emulate)
                let path = bf16ActivationPath.rawValue
                for threads in [1, 2] {
                    var out = [Float](repeating: .nan, count: n * rows)
                    w.withUnsafeBytes { wb in
                        let m = WeightMatrix(dtype: .bf16, rows: rows, cols: cols, base: wb.baseAddress!)
                        matmulBF16(&out, ldo: rows, x, ldx: cols, n: n, m, pool: WorkerPool(threads: threads))
                    }
                    if underflow { #expect(want.allSatisfy { $0.bitPattern == 0 }, "the definition gives +0") }
                    let same = zip(out, want).allSatisfy { $0.bitPattern == $1.bitPattern }
                    #expect(same, "\(path) \(rows)×\(cols) n=\(n), \(threads) threads: \(zip(out, want).filter { $0.bitPattern != $1.bitPattern }.prefix(3))")
                }
            }
        }
    }

    /// With bf16 activations each element is bit-identical whatever the batch and the split, and
    /// `matmul(activations: .bf16)` is the rounding then that product; the results stay near the
    /// exact product of the rounded activations.
    @Test func bf16ActivationProductsAreBatchInvariant() {
        defer { forceKernels(nil); forceBF16ActivationEmulation(false) }
        let (rows, cols, n) = (37, 1000, 23)
        let (bytes, exact) = makeWeights(.bf16, rows: rows, cols: cols, seed: 11)
        let x: [Float] = (0..<(n * cols)).map { i -> Float in
            let coarse = Float((i * 53) % 31) / 7 - 2
            return coarse + Float(i % 7) * 1e-3   // bits below bf16's precision, rounded away
        }
        var xb = [UInt16](repeating: 0, count: x.count)
        roundToBF16(&xb, x, count: x.count)
        for (isa, emulate) in [("avx512", false), ("avx512", true), ("scalar", false)] where forceKernels(isa) {
            forceBF16ActivationEmulation(emulate)
            let path = bf16ActivationPath.rawValue
            func run(_ tokens: Range<Int>, threads: Int) -> [Float] {
                var out = [Float](repeating: 0, count: tokens.count * rows)
                bytes.withUnsafeBytes { w in
                    let m = WeightMatrix(dtype: .bf16, rows: rows, cols: cols, base: w.baseAddress!)
                    Array(x[(tokens.lowerBound * cols)..<(tokens.upperBound * cols)]).withUnsafeBufferPointer { xs in
                        matmul(&out, ldo: rows, xs.baseAddress!, ldx: cols, n: tokens.count, m,
                               pool: WorkerPool(threads: threads), activations: .bf16)
                    }
                }
                return out
            }
            let all = run(0..<n, threads: 1)
            #expect(run(0..<n, threads: 2) == all, "\(path): thread split changed results")
            for (a, b) in [(0, 1), (5, 6), (22, 23), (3, 6), (1, 6), (4, 10), (7, 23)] {
                #expect(run(a..<b, threads: 1) == Array(all[(a * rows)..<(b * rows)]), "\(path): batch \(a)..<\(b) differs")
            }
            for t in 0..<n {
                for r in 0..<rows {
                    var ref = 0.0
                    for k in 0..<cols { ref += exact[r * cols + k] * Double(bf16ToFloat(xb[t * cols + k])) }
                    #expect(abs(Double(all[t * rows + r]) - ref) <= 1e-4, "\(path) [\(t),\(r)]: \(all[t * rows + r]) vs \(ref)")
                }
            }
        }
    }

    /// `next` (the matrix multiplied by after this one) only moves its first lines toward the
    /// cache: every path, split and ISA gives the same bits with it as without, whatever it points
    /// at (a matrix of another shape and dtype, more bytes than the kernels prefetch).
    @Test(arguments: [DType.bf16, .f32])
    func nextMatrixHintChangesNoResult(dtype: DType) {
        defer { forceKernels(nil) }
        let (rows, cols) = (70, 1000)
        let (bytes, _) = makeWeights(dtype, rows: rows, cols: cols, seed: 5)
        let (nextBytes, _) = makeWeights(.bf16, rows: 300, cols: 600, seed: 6)
        for isa in ["scalar", "avx2", "avx512"] where forceKernels(isa) {
            for n in [1, 4, 5, 8, 16, 17, 40] {
                let x = (0..<(n * cols)).map { Float(($0 * 29) % 17) / 5 - 1.5 }
                for threads in [1, 2] {
                    func run(hint: Bool) -> [Float] {
                        var out = [Float](repeating: .nan, count: n * rows)
                        bytes.withUnsafeBytes { w in
                            nextBytes.withUnsafeBytes { nw in
                                let m = WeightMatrix(dtype: dtype, rows: rows, cols: cols, base: w.baseAddress!)
                                let next = WeightMatrix(dtype: .bf16, rows: 300, cols: 600, base: nw.baseAddress!)
                                matmul(&out, ldo: rows, x, ldx: cols, n: n, m, pool: WorkerPool(threads: threads), next: hint ? next : nil)
                            }
                        }
                        return out
                    }
                    let plain = run(hint: false)
                    #expect(!plain.contains { $0.isNaN }, "\(isa) \(dtype) n=\(n): outputs left unwritten")
                    let same = run(hint: true) == plain
                    #expect(same, "\(isa) \(dtype) n=\(n), \(threads) threads: the next-matrix hint changed results")
                }
            }
        }
    }

    @Test func unalignedWeightsAreRead() {
        let (bytes, exact) = makeWeights(.bf16, rows: 4, cols: 40, seed: 3)
        let shifted = [UInt8(0)] + bytes            // odd address for 2-byte elements
        let x = [Float](repeating: 1, count: 40)
        var out = [Float](repeating: 0, count: 4)
        shifted.withUnsafeBytes { w in
            matmul(&out, ldo: 4, x, ldx: 40, n: 1, WeightMatrix(dtype: .bf16, rows: 4, cols: 40, base: w.baseAddress! + 1), pool: WorkerPool(threads: 1))
        }
        for r in 0..<4 {
            let ref = (0..<40).map { exact[r * 40 + $0] }.reduce(0, +)
            #expect(abs(Double(out[r]) - ref) < 1e-4)
        }
    }

    @Test func halfPrecisionConversions() {
        #expect(bf16ToFloat(floatToBF16(1.5)) == 1.5)
        #expect(floatToBF16(1.0 + 1.0 / 256) == floatToBF16(1.0), "ties round to even")
        #expect(bf16ToFloat(floatToBF16(.nan)).isNaN)
        #expect(bf16ToFloat(floatToBF16(.infinity)) == .infinity)
        #expect(f16ToFloat(floatToF16(0.000061035156)) == 0.000061035156)
        #expect(f16ToFloat(floatToF16(65504)) == 65504)
    }

    @Test func rmsNormMatchesDefinition() {
        let x: [Float] = [1, -2, 3, 0.5]
        let w: [Float] = [1, 2, 0.5, 1]
        var out = [Float](repeating: 0, count: 4)
        w.withUnsafeBytes { wp in rmsNorm(&out, x, weight: wp.baseAddress!, dtype: .f32, count: 4, eps: 1e-5) }
        let ms = x.map { Double($0 * $0) }.reduce(0, +) / 4
        for i in 0..<4 {
            #expect(abs(Double(out[i]) - Double(w[i]) * Double(x[i]) / (ms + 1e-5).squareRoot()) < 1e-6)
        }
    }

    @Test func systemLibrariesLink() {
        #expect(String(cString: uv_version_string()).hasPrefix("1."))
        #expect(http_parser_version() >> 16 == 2)
        #expect(!SystemInfo.openBLASCoreName.isEmpty)
        #expect(["avx512", "avx2", "scalar"].contains(SystemInfo.kernelName))
    }

    /// SwiGLU's vectorised exponential gives libm's expf bit for bit (it replaces 16 × 1536 calls
    /// per layer of a batch-16 step), across the range, near 0, and on libm's special path.
    @Test func swiGLUEqualsTheScalarFormula() {
        var gate: [Float] = []
        var state: UInt64 = 7
        for i in 0..<20000 {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            let u = Float(Int64(bitPattern: state) >> 40) / Float(1 << 23)       // about ±1
            gate.append(i % 3 == 0 ? u * 100 : i % 3 == 1 ? u * 8 : u * 1e-3)
        }
        gate += [0, -0, 88, -88, 89, -89, 104, -104, .infinity, -.infinity, .nan, Float.leastNormalMagnitude / 4, -Float.leastNormalMagnitude / 4]   // subnormals
        let up = gate.indices.map { Float(($0 * 37) % 23) / 11 - 1 }
        var got = gate
        got.withUnsafeMutableBufferPointer { g in up.withUnsafeBufferPointer { swiGLU(g.baseAddress!, $0.baseAddress!, count: g.count) } }
        for i in gate.indices {
            let g = gate[i]
            let want = (g / (1 + expf(-g))) * up[i]
            #expect(got[i].bitPattern == want.bitPattern, "g = \(g): \(got[i]) vs \(want)")
        }
    }

    /// One query head's attention equals the per-position sequence the forward pass used to make
    /// (dot, expf with the max subtracted, axpy of e/sum), bit for bit; the scratch ends holding
    /// the weights e/sum (what attention traces report).
    @Test func attentionEqualsThePerPositionSequence() {
        defer { forceKernels(nil) }
        for isa in ["scalar", "avx2", "avx512"] where forceKernels(isa) {
        for (hd, n) in [(64, 1), (64, 7), (64, 8), (64, 61), (128, 33), (24, 19), (12, 5), (80, 9), (48, 3)] {
            let stride = hd * 3 + 4
            let keys = (0..<(n * stride)).map { Float(($0 * 53) % 97) / 13 - 3.5 }
            let values = (0..<(n * stride)).map { Float(($0 * 29) % 61) / 17 - 1.7 }
            let q = (0..<hd).map { Float(($0 * 11) % 19) / 5 - 1.9 }
            let scale = 1 / Float(hd).squareRoot()
            var out = [Float](repeating: .nan, count: hd), scratch = [Float](repeating: 0, count: n)
            attend(&out, query: q, keys: keys, values: values, stride: stride, count: n, headDim: hd, scale: scale, scratch: &scratch)
            var scores = [Float](repeating: 0, count: n)
            var maxScore = -Float.infinity
            keys.withUnsafeBufferPointer { k in
                for j in 0..<n {
                    scores[j] = dot(q, k.baseAddress! + j * stride, count: hd) * scale
                    maxScore = max(maxScore, scores[j])
                }
            }
            var sum: Float = 0
            for j in 0..<n {
                scores[j] = expf(scores[j] - maxScore)
                sum += scores[j]
            }
            var want = [Float](repeating: 0, count: hd)
            values.withUnsafeBufferPointer { v in
                for j in 0..<n { axpy(&want, scores[j] / sum, v.baseAddress! + j * stride, count: hd) }
            }
            #expect(out.map(\.bitPattern) == want.map(\.bitPattern), "\(isa) hd \(hd) n \(n)")
            #expect(scratch.map(\.bitPattern) == scores.map { ($0 / sum).bitPattern }, "weights, \(isa) hd \(hd) n \(n)")
        }
        }
    }

    /// Attention over a bf16 cache equals attention over f32 rows holding the widened values,
    /// bit for bit (output and weights), on every kernel family this CPU has, including head
    /// sizes and lengths with vector tails.
    @Test func bf16AttentionEqualsAttentionOverWidenedValues() {
        defer { forceKernels(nil) }
        for isa in ["scalar", "avx2", "avx512"] where forceKernels(isa) {
            for (hd, n) in [(64, 1), (64, 7), (64, 8), (64, 61), (128, 33), (24, 19), (12, 5), (80, 9), (48, 3)] {
                let stride = hd * 3 + 4
                let keysF: [Float] = (0..<(n * stride)).map { i in
                    let base = Float((i * 53) % 97) / 13 - 3.5
                    return base + Float(i % 7) * 1e-3
                }
                let valuesF: [Float] = (0..<(n * stride)).map { i in
                    let base = Float((i * 29) % 61) / 17 - 1.7
                    return base + Float(i % 5) * 1e-3
                }
                var keys = [UInt16](repeating: 0, count: keysF.count), values = keys
                roundToBF16(&keys, keysF, count: keysF.count)
                roundToBF16(&values, valuesF, count: valuesF.count)
                let widenedKeys = keys.map { Float(bitPattern: UInt32($0) << 16) }
                let widenedValues = values.map { Float(bitPattern: UInt32($0) << 16) }
                let q = (0..<hd).map { Float(($0 * 11) % 19) / 5 - 1.9 }
                let scale = 1 / Float(hd).squareRoot()
                var got = [Float](repeating: .nan, count: hd), gotWeights = [Float](repeating: 0, count: n)
                attendBF16(&got, query: q, keys: keys, values: values, stride: stride, count: n, headDim: hd, scale: scale, scratch: &gotWeights)
                var want = [Float](repeating: .nan, count: hd), wantWeights = [Float](repeating: 0, count: n)
                attend(&want, query: q, keys: widenedKeys, values: widenedValues, stride: stride, count: n, headDim: hd, scale: scale, scratch: &wantWeights)
                #expect(got.map(\.bitPattern) == want.map(\.bitPattern), "\(isa) hd \(hd) n \(n)")
                #expect(gotWeights.map(\.bitPattern) == wantWeights.map(\.bitPattern), "weights, \(isa) hd \(hd) n \(n)")
            }
        }
    }

    /// Grouped-query attention gives every head `attend`'s (or `attendBF16`'s) outputs and
    /// weights bit for bit, for groups of 1-7 heads (passes of up to 4), head sizes that take the
    /// grouped kernel (multiples of 64) and others, and key counts with and without a remainder
    /// of the four-key loop, on every ISA.
    @Test func groupedAttentionEqualsAttentionPerHead() {
        defer { forceKernels(nil) }
        for isa in ["scalar", "avx2", "avx512"] where forceKernels(isa) {
            for (hd, n, g) in [(64, 1, 3), (64, 7, 3), (64, 8, 1), (64, 61, 7), (128, 33, 4), (128, 5, 2), (48, 9, 3), (64, 130, 5)] {
                let stride = hd * 2 + 4
                let keysF: [Float] = (0..<(n * stride)).map { i in Float((i * 53) % 97) / 13 - 3.5 + Float(i % 7) * 1e-3 }
                let valuesF: [Float] = (0..<(n * stride)).map { i in Float((i * 29) % 61) / 17 - 1.7 + Float(i % 5) * 1e-3 }
                var keysB = [UInt16](repeating: 0, count: keysF.count), valuesB = keysB
                roundToBF16(&keysB, keysF, count: keysF.count)
                roundToBF16(&valuesB, valuesF, count: valuesF.count)
                let q: [Float] = (0..<(g * hd)).map { Float(($0 * 11) % 19) / 5 - 1.9 + Float($0 % 3) * 1e-3 }
                let scale = 1 / Float(hd).squareRoot()
                for bf16 in [false, true] {
                    var got = [Float](repeating: .nan, count: g * hd), gotWeights = [Float](repeating: .nan, count: g * n)
                    q.withUnsafeBufferPointer { qp in
                        if bf16 {
                            attendGroupBF16(&got, queries: qp.baseAddress!, heads: g, keys: keysB, values: valuesB, stride: stride,
                                            count: n, headDim: hd, scale: scale, scratch: &gotWeights)
                        } else {
                            attendGroup(&got, queries: qp.baseAddress!, heads: g, keys: keysF, values: valuesF, stride: stride,
                                        count: n, headDim: hd, scale: scale, scratch: &gotWeights)
                        }
                    }
                    for h in 0..<g {
                        var want = [Float](repeating: .nan, count: hd), wantWeights = [Float](repeating: 0, count: n)
                        let qh = Array(q[(h * hd)..<((h + 1) * hd)])
                        if bf16 {
                            attendBF16(&want, query: qh, keys: keysB, values: valuesB, stride: stride, count: n, headDim: hd, scale: scale, scratch: &wantWeights)
                        } else {
                            attend(&want, query: qh, keys: keysF, values: valuesF, stride: stride, count: n, headDim: hd, scale: scale, scratch: &wantWeights)
                        }
                        #expect(got[(h * hd)..<((h + 1) * hd)].map(\.bitPattern) == want.map(\.bitPattern), "\(isa) bf16 \(bf16) hd \(hd) n \(n) g \(g) head \(h)")
                        #expect(gotWeights[(h * n)..<((h + 1) * n)].map(\.bitPattern) == wantWeights.map(\.bitPattern), "weights, \(isa) bf16 \(bf16) hd \(hd) n \(n) g \(g) head \(h)")
                    }
                }
            }
        }
    }

    /// f32 → bf16 rounds to nearest with ties to even, as PyTorch does (values from
    /// `torch.tensor(x).to(torch.bfloat16)`, torch 2.13.0): overflow to ±inf, NaN stays NaN.
    @Test func bf16RoundingIsToNearestEven() {
        let cases: [(UInt32, UInt16)] = [
            (0x3F80_0000, 0x3F80),   // 1.0 exact
            (0x3F80_8000, 0x3F80),   // tie, even below
            (0x3F81_8000, 0x3F82),   // tie, even above
            (0x3F80_8001, 0x3F81),   // above the tie
            (0x3F80_7FFF, 0x3F80),   // below the tie
            (0xBF81_8000, 0xBF82),   // negative tie
            (0x7F7F_FFFF, 0x7F80),   // largest float → +inf
            (0xFF7F_FFFF, 0xFF80),   // → -inf
            (0x7F80_0000, 0x7F80),   // +inf
            (0x0000_0001, 0x0000),   // smallest subnormal → +0
            (0x8000_0000, 0x8000),   // -0
        ]
        // Three times over (33 values): the first 32 go through the 16-wide path where the CPU
        // has AVX-512, the last through the scalar loop.
        let all = cases + cases + cases
        let src = all.map { Float(bitPattern: $0.0) }
        var dst = [UInt16](repeating: 0xFFFF, count: src.count)
        roundToBF16(&dst, src, count: src.count)
        for (i, c) in all.enumerated() {
            #expect(dst[i] == c.1, "[\(i)] \(String(c.0, radix: 16)) → \(String(dst[i], radix: 16)), want \(String(c.1, radix: 16))")
        }
        // A quiet NaN and a signalling one whose payload would round away, 17 times over.
        let nans = (0..<34).map { $0 % 2 == 0 ? Float.nan : Float(bitPattern: 0x7F80_0001) }
        var nan = [UInt16](repeating: 0, count: nans.count)
        roundToBF16(&nan, nans, count: nans.count)
        #expect(nan.allSatisfy { Float(bitPattern: UInt32($0) << 16).isNaN })
    }

    /// RoPE equals the rotate_half formula with every product rounded (no fused multiply-add),
    /// bit for bit, for head sizes with and without a vector tail.
    @Test func ropeEqualsTheRotateHalfFormula() {
        for (heads, hd) in [(9, 64), (2, 128), (3, 24), (1, 6)] {
            let half = hd / 2
            let p = (0..<(heads * hd)).map { Float(($0 * 37) % 101) / 7 - 7.1 }
            let cs = (0..<half).map { cosf(Float($0) * 0.37 + 0.1) }, sn = (0..<half).map { sinf(Float($0) * 0.37 + 0.1) }
            var got = p
            rope(&got, heads: heads, headDim: hd, cos: cs, sin: sn)
            var want = p
            for h in 0..<heads {
                for i in 0..<half {
                    let a = p[h * hd + i], b = p[h * hd + half + i]
                    let m1 = a * cs[i], m2 = b * sn[i], m3 = b * cs[i], m4 = a * sn[i]
                    want[h * hd + i] = m1 - m2
                    want[h * hd + half + i] = m3 + m4
                }
            }
            #expect(got.map(\.bitPattern) == want.map(\.bitPattern), "heads \(heads) hd \(hd)")
        }
    }

    /// RMSNorm against the same formula evaluated in f64 with a plain sequential sum: the
    /// partial-sum order may move the f64 sum by a few ulps, never the f32 result here.
    @Test func rmsNormMatchesTheF64Formula() {
        for n in [576, 896, 7, 1] {
            let x = (0..<n).map { Float(($0 * 53) % 97) / 13 - 3.5 }
            let w = (0..<n).map { Float(($0 * 11) % 19) / 9 }
            var out = [Float](repeating: .nan, count: n)
            w.withUnsafeBytes { wb in rmsNorm(&out, x, weight: wb.baseAddress!, dtype: .f32, count: n, eps: 1e-5) }
            var ss = 0.0
            for v in x { ss += Double(v) * Double(v) }
            let inv = Float(1 / (ss / Double(n) + 1e-5).squareRoot())
            let want = (0..<n).map { w[$0] * (x[$0] * inv) }
            #expect(out == want, "n \(n)")
        }
    }

    @Test func probesMeasureSomething() {
        #expect(Probes.readBandwidth(bytes: 8 << 20, threads: 1, repeats: 1) > 1e8)
        #expect(Probes.sgemmRate(m: 64, n: 64, k: 64, threads: 1, repeats: 1) > 1e7)
        // The FMA-only loop: zero only with the scalar kernels (no vector FMA to time).
        let fma = Probes.fmaRate(threads: 2, repeats: 1)
        #expect(SystemInfo.kernelName == "scalar" ? fma == 0 : fma > 1e9)
        #expect(Probes.median([3, 1, 2]) == 2 && Probes.median([4, 1, 2, 3]) == 2.5)
    }
}
