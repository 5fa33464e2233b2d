import Foundation

extension ModelWeights {
    /// The model's fingerprint: FNV-1a 64 over config.json's fields (as sorted-key JSON) and
    /// the tensor table (names, dtypes, shapes), so a delta names the model it was made for.
    /// The one definition Training (checkpoints, deltas) and Transfer (delta validation) share.
    public var fingerprint: String {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        func feed(_ s: String) { for byte in s.utf8 { h = (h ^ UInt64(byte)) &* 0x100_0000_01b3 } }
        if let data = try? JSONEncoder().encode(config), let text = String(data: data, encoding: .utf8) {
            // JSONEncoder's key order is not stable: sort the object's keys.
            if let obj = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
               let sorted = try? JSONSerialization.data(withJSONObject: obj, options: [.sortedKeys]),
               let s = String(data: sorted, encoding: .utf8) {
                feed(s)
            } else {
                feed(text)
            }
        }
        for name in storage.names.sorted() {
            if let info = try? storage.info(name) { feed("\(name):\(info.dtype.rawValue):\(info.shape)") }
        }
        return String(format: "fnv1a64:%016llx", h)
    }
}
