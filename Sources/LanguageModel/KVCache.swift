import TensorCore

/// How a KV cache stores keys and values. `f32` keeps the values the forward computed, so logits
/// match transformers' f32 reference; `bf16` rounds each to bfloat16 (to nearest even): half the
/// memory per token, so twice the sequences fit in `--kv-cache-mb` and attention reads half the
/// bytes, at the cost of logits that move by up to ~0.01 from the f32 reference (README).
public enum KVCacheType: String, Sendable, CaseIterable {
    case f32
    case bf16

    public var bytesPerElement: Int { self == .f32 ? 4 : 2 }
}

/// One sequence's keys and values for every layer, grown on demand up to `maxTokens`.
/// Layout: keys[layer][position][kvDim] (and values alike) in one allocation per tensor,
/// elements f32 or bf16 (`type`).
public final class KVCache: @unchecked Sendable {
    public let layers: Int
    public let kvDim: Int
    public let maxTokens: Int
    public let type: KVCacheType
    /// Positions filled so far (the next token goes at `count`).
    public internal(set) var count: Int = 0
    public private(set) var capacity: Int
    private(set) var keys: UnsafeMutableRawPointer
    private(set) var values: UnsafeMutableRawPointer

    public init(layers: Int, kvDim: Int, maxTokens: Int, initialCapacity: Int = 64, type: KVCacheType = .f32) {
        self.layers = layers
        self.kvDim = kvDim
        self.maxTokens = maxTokens
        self.type = type
        capacity = max(1, min(initialCapacity, maxTokens))
        keys = alignedBytes(layers * capacity * kvDim * type.bytesPerElement)
        values = alignedBytes(layers * capacity * kvDim * type.bytesPerElement)
    }

    deinit {
        keys.deallocate()
        values.deallocate()
    }

    /// Bytes one position costs across all layers (keys and values).
    public static func bytesPerToken(layers: Int, kvDim: Int, type: KVCacheType = .f32) -> Int {
        2 * layers * kvDim * type.bytesPerElement
    }

    /// Resident bytes now.
    public var bytes: Int { 2 * layers * capacity * kvDim * type.bytesPerElement }

    /// Makes room for positions `[0, needed)`.
    func reserve(_ needed: Int) throws {
        guard needed > capacity else { return }
        guard needed <= maxTokens else { throw ModelError.contextOverflow(needed: needed, limit: maxTokens) }
        let newCapacity = min(maxTokens, max(needed, capacity * 2))
        let e = type.bytesPerElement
        let nk = alignedBytes(layers * newCapacity * kvDim * e)
        let nv = alignedBytes(layers * newCapacity * kvDim * e)
        for l in 0..<layers {
            (nk + l * newCapacity * kvDim * e).copyMemory(from: keys + l * capacity * kvDim * e, byteCount: count * kvDim * e)
            (nv + l * newCapacity * kvDim * e).copyMemory(from: values + l * capacity * kvDim * e, byteCount: count * kvDim * e)
        }
        keys.deallocate()
        values.deallocate()
        keys = nk
        values = nv
        capacity = newCapacity
    }

    /// Writes one position's key and value rows (kvDim floats each), rounded to bf16 in a bf16 cache.
    @inline(__always) func store(layer: Int, position: Int, key: UnsafePointer<Float>, value: UnsafePointer<Float>) {
        let offset = (layer * capacity + position) * kvDim
        switch type {
        case .f32:
            (keys.assumingMemoryBound(to: Float.self) + offset).update(from: key, count: kvDim)
            (values.assumingMemoryBound(to: Float.self) + offset).update(from: value, count: kvDim)
        case .bf16:
            roundToBF16(keys.assumingMemoryBound(to: UInt16.self) + offset, key, count: kvDim)
            roundToBF16(values.assumingMemoryBound(to: UInt16.self) + offset, value, count: kvDim)
        }
    }

    /// Bytes of one layer's filled keys (as many of its values; every layer holds as many).
    private var filledBytesPerSide: Int { count * kvDim * type.bytesPerElement }

    /// Bytes of one layer's filled keys and values together.
    var filledBytesPerLayer: Int { 2 * filledBytesPerSide }

    /// Asks for one layer's filled keys and values to be brought into L2 (a hint: gk_prefetch_l2).
    @inline(__always) func prefetch(layer: Int) {
        let (k, v, bytes) = filled(layer: layer)
        prefetchL2(k, bytes: bytes)
        prefetchL2(v, bytes: bytes)
    }

    /// One layer's filled keys and values: where each starts and their bytes (each).
    @inline(__always) func filled(layer: Int) -> (keys: UnsafeRawPointer, values: UnsafeRawPointer, bytes: Int) {
        let offset = layer * capacity * kvDim * type.bytesPerElement
        return (UnsafeRawPointer(keys + offset), UnsafeRawPointer(values + offset), filledBytesPerSide)
    }

    /// Position 0 of a layer's keys (f32 cache).
    @inline(__always) func keys(layer: Int) -> UnsafeMutablePointer<Float> {
        keys.assumingMemoryBound(to: Float.self) + layer * capacity * kvDim
    }

    @inline(__always) func values(layer: Int) -> UnsafeMutablePointer<Float> {
        values.assumingMemoryBound(to: Float.self) + layer * capacity * kvDim
    }

    /// Position 0 of a layer's keys (bf16 cache).
    @inline(__always) func keysBF16(layer: Int) -> UnsafeMutablePointer<UInt16> {
        keys.assumingMemoryBound(to: UInt16.self) + layer * capacity * kvDim
    }

    @inline(__always) func valuesBF16(layer: Int) -> UnsafeMutablePointer<UInt16> {
        values.assumingMemoryBound(to: UInt16.self) + layer * capacity * kvDim
    }

    /// Forgets positions from `length` on (stop, rewind).
    public func truncate(to length: Int) { count = max(0, min(count, length)) }
}

/// Bytes on a 64-byte (cache-line) boundary (see alignedFloats).
@inline(__always)
func alignedBytes(_ count: Int) -> UnsafeMutableRawPointer {
    UnsafeMutableRawPointer.allocate(byteCount: max(count, 1), alignment: 64)
}

/// Float buffers on 64-byte (cache-line) boundaries: the kernels' 512-bit loads of activation
/// and cache rows then never straddle two lines (a 16-byte-aligned buffer made batch-16
/// matmuls ~25% slower). Release with `deallocate()` as usual.
@inline(__always)
func alignedFloats(_ count: Int) -> UnsafeMutablePointer<Float> {
    alignedBytes(max(count, 1) * MemoryLayout<Float>.stride).bindMemory(to: Float.self, capacity: max(count, 1))
}
