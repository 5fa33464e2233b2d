/// One sequence's keys and values for every layer, f32, grown on demand up to `maxTokens`.
/// Layout: keys[layer][position][kvDim] (and values alike) in one allocation per tensor.
public final class KVCache: @unchecked Sendable {
    public let layers: Int
    public let kvDim: Int
    public let maxTokens: Int
    /// Positions filled so far (the next token goes at `count`).
    public internal(set) var count: Int = 0
    public private(set) var capacity: Int
    private(set) var keys: UnsafeMutablePointer<Float>
    private(set) var values: UnsafeMutablePointer<Float>

    public init(layers: Int, kvDim: Int, maxTokens: Int, initialCapacity: Int = 64) {
        self.layers = layers
        self.kvDim = kvDim
        self.maxTokens = maxTokens
        capacity = max(1, min(initialCapacity, maxTokens))
        keys = alignedFloats(layers * capacity * kvDim)
        values = alignedFloats(layers * capacity * kvDim)
    }

    deinit {
        keys.deallocate()
        values.deallocate()
    }

    /// Bytes one position costs across all layers (keys and values).
    public static func bytesPerToken(layers: Int, kvDim: Int) -> Int { 2 * layers * kvDim * 4 }

    /// Resident bytes now.
    public var bytes: Int { 2 * layers * capacity * kvDim * 4 }

    /// Makes room for positions `[0, needed)`.
    func reserve(_ needed: Int) throws {
        guard needed > capacity else { return }
        guard needed <= maxTokens else { throw ModelError.contextOverflow(needed: needed, limit: maxTokens) }
        let newCapacity = min(maxTokens, max(needed, capacity * 2))
        let nk = alignedFloats(layers * newCapacity * kvDim)
        let nv = alignedFloats(layers * newCapacity * kvDim)
        for l in 0..<layers {
            (nk + l * newCapacity * kvDim).update(from: keys + l * capacity * kvDim, count: count * kvDim)
            (nv + l * newCapacity * kvDim).update(from: values + l * capacity * kvDim, count: count * kvDim)
        }
        keys.deallocate()
        values.deallocate()
        keys = nk
        values = nv
        capacity = newCapacity
    }

    @inline(__always) func key(layer: Int, position: Int) -> UnsafeMutablePointer<Float> {
        keys + (layer * capacity + position) * kvDim
    }

    @inline(__always) func value(layer: Int, position: Int) -> UnsafeMutablePointer<Float> {
        values + (layer * capacity + position) * kvDim
    }

    /// Forgets positions from `length` on (stop, rewind).
    public func truncate(to length: Int) { count = max(0, min(count, length)) }
}

/// Float buffers on 64-byte (cache-line) boundaries: the kernels' 512-bit loads of activation
/// and cache rows then never straddle two lines (a 16-byte-aligned buffer made batch-16
/// matmuls ~25% slower). Release with `deallocate()` as usual.
@inline(__always)
func alignedFloats(_ count: Int) -> UnsafeMutablePointer<Float> {
    UnsafeMutableRawPointer.allocate(byteCount: max(count, 1) * MemoryLayout<Float>.stride, alignment: 64)
        .bindMemory(to: Float.self, capacity: max(count, 1))
}
