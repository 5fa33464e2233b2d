import TensorCore

/// One tensor's entry in a safetensors header, validated against its file.
///
/// `byteOffset` is absolute in the file and need not be a multiple of `dtype.size`: the format
/// does not require alignment, so consumers must read elements with unaligned loads
/// (`UnsafeRawPointer.loadUnaligned(fromByteOffset:as:)`) or copy first.
public struct TensorInfo: Sendable, Hashable {
    public let name: String
    public let dtype: DType
    /// Row-major; `[]` is a scalar (one element), any 0 makes the tensor empty.
    public let shape: [Int]
    /// Absolute offset of the first byte in the file.
    public let byteOffset: Int
    /// product(shape) × dtype.size, checked against the header's data_offsets.
    public let byteCount: Int

    /// product(shape).
    public var elementCount: Int { byteCount / dtype.size }

    public var rank: Int { shape.count }

    init(name: String, dtype: DType, shape: [Int], byteOffset: Int, byteCount: Int) {
        self.name = name
        self.dtype = dtype
        self.shape = shape
        self.byteOffset = byteOffset
        self.byteCount = byteCount
    }
}

/// product(shape) × dtype.size, or nil when a dimension is negative or the product overflows.
func checkedByteCount(shape: [Int], dtype: DType) -> Int? {
    var count = dtype.size
    for dimension in shape {
        guard dimension >= 0 else { return nil }
        let (product, overflow) = count.multipliedReportingOverflow(by: dimension)
        guard !overflow else { return nil }
        count = product
    }
    return count
}

/// What the reader and the sharded folder share: the lookup API over validated tensors.
public protocol SafeTensorsSource: AnyObject, Sendable {
    var tensors: [String: TensorInfo] { get }
    /// Tensor names sorted in ascending order.
    var names: [String] { get }
    var metadata: [String: String] { get }
    func info(_ name: String) throws -> TensorInfo
    /// The tensor's bytes inside the mapping: valid while the owner lives; unaligned in general.
    func data(_ name: String) throws -> UnsafeRawBufferPointer
}

/// The name closest to `name` by edit distance when close enough to be a plausible typo, else
/// a name that one of them ends with (a missing or extra "model." prefix); nil otherwise.
func closestName(to name: String, in candidates: some Collection<String>) -> String? {
    let target = Array(name.utf8)
    var best: (name: String, distance: Int)?
    for candidate in candidates.sorted() {
        let distance = editDistance(target, Array(candidate.utf8))
        if distance < best?.distance ?? Int.max { best = (candidate, distance) }
    }
    if let best, best.distance <= max(2, target.count / 4) { return best.name }
    guard !name.isEmpty else { return nil }
    return candidates.filter { !$0.isEmpty && ($0.hasSuffix(name) || name.hasSuffix($0)) }.min()
}

/// Levenshtein distance over bytes, two rows.
private func editDistance(_ a: [UInt8], _ b: [UInt8]) -> Int {
    if a.isEmpty { return b.count }
    if b.isEmpty { return a.count }
    var previous = Array(0...b.count)
    var row = [Int](repeating: 0, count: b.count + 1)
    for i in 1...a.count {
        row[0] = i
        for j in 1...b.count {
            let substitution = previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)
            row[j] = min(substitution, previous[j] + 1, row[j - 1] + 1)
        }
        swap(&previous, &row)
    }
    return previous[b.count]
}
