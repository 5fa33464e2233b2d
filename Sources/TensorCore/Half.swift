// Scalar conversions between f32 and the 16-bit float formats. Hot loops use the SIMD kernels
// in CKernels; these are for tests, writers and the odd element.

/// bf16 is the top half of an IEEE f32: widening is a shift.
@inline(__always)
public func bf16ToFloat(_ bits: UInt16) -> Float {
    Float(bitPattern: UInt32(bits) << 16)
}

/// Round-to-nearest-even f32 → bf16, as torch does (`tensor.to(torch.bfloat16)`); NaN stays NaN.
@inline(__always)
public func floatToBF16(_ value: Float) -> UInt16 {
    let bits = value.bitPattern
    if value.isNaN { return UInt16(truncatingIfNeeded: (bits >> 16) | 0x0040) }
    let rounding: UInt32 = 0x7FFF + ((bits >> 16) & 1)
    return UInt16(truncatingIfNeeded: (bits &+ rounding) >> 16)
}

/// IEEE binary16 → f32 (exact).
@inline(__always)
public func f16ToFloat(_ bits: UInt16) -> Float {
    Float(Float16(bitPattern: bits))
}

/// f32 → IEEE binary16, round to nearest even.
@inline(__always)
public func floatToF16(_ value: Float) -> UInt16 {
    Float16(value).bitPattern
}
