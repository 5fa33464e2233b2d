import Foundation
import GraftPluginABI

extension HostTable {
    /// The 1.1 model services (issue 6): target_model, open_model, model_config,
    /// model_fingerprint_of, model_tensor_shape, model_read_tensor, model_tokenize,
    /// model_chat_format, model_forward, parallel_for, gemm. A NULL pointer means the service
    /// is not offered.
    static func installModelServices(_ h: inout graft_host) {
        h.target_model = { data in RunContext.from(data)?.targetModel.handle }
        h.open_model = { data, name in
            guard let c = RunContext.from(data) else { return nil }
            guard let name else { c.setError("null model name"); return nil }
            return c.openModel(String(cString: name))?.handle
        }
    }
}
