import Foundation

/// An owned, zero-initialised f32 buffer: parameters, gradients, optimizer moments, deltas.
/// A class because it owns memory that several views (a tied lm head, an optimizer) share.
public final class Tensor: @unchecked Sendable {
    public let shape: [Int]
    public let count: Int
    public let data: UnsafeMutablePointer<Float>

    public init(shape: [Int]) {
        self.shape = shape
        self.count = shape.reduce(1, *)
        data = .allocate(capacity: max(count, 1))
        data.initialize(repeating: 0, count: max(count, 1))
    }

    public convenience init(shape: [Int], values: [Float]) {
        self.init(shape: shape)
        precondition(values.count == count, "Tensor: \(values.count) values for shape \(shape)")
        values.withUnsafeBufferPointer { data.update(from: $0.baseAddress!, count: count) }
    }

    public convenience init(copying other: Tensor) {
        self.init(shape: other.shape)
        data.update(from: other.data, count: count)
    }

    deinit { data.deallocate() }

    public var values: [Float] { Array(UnsafeBufferPointer(start: data, count: count)) }

    public func zero() { data.update(repeating: 0, count: count) }

    public subscript(i: Int) -> Float {
        get { data[i] }
        set { data[i] = newValue }
    }
}

/// Scratch f32 memory that grows to the largest request and is reused across steps.
final class Scratch {
    private(set) var data: UnsafeMutablePointer<Float>
    private(set) var capacity: Int

    init() {
        capacity = 1
        data = .allocate(capacity: 1)
    }

    deinit { data.deallocate() }

    /// At least `count` floats (contents undefined).
    func reserve(_ count: Int) -> UnsafeMutablePointer<Float> {
        if count > capacity {
            data.deallocate()
            capacity = count
            data = .allocate(capacity: count)
        }
        return data
    }

    /// At least `count` zeroed floats.
    func zeros(_ count: Int) -> UnsafeMutablePointer<Float> {
        let p = reserve(count)
        p.update(repeating: 0, count: count)
        return p
    }
}
