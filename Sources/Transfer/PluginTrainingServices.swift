import Foundation
import GraftPluginABI

extension HostTable {
    /// The 1.1 gradient services (issue 7): loss_and_gradient, accumulate_sensitivities,
    /// train_lora. A NULL pointer means the service is not offered.
    static func installTrainingServices(_ h: inout graft_host) {
    }
}
