/// Errors loading or running a model. Each names the file or tensor and carries a hint.
public enum ModelError: Error, CustomStringConvertible, Equatable {
    case missingFile(String, hint: String)
    case invalidConfig(String, String)
    case missingTensor(String, hint: String)
    case badTensor(String, String)
    case contextOverflow(needed: Int, limit: Int)
    case invalidToken(Int, vocabSize: Int)

    public var description: String {
        switch self {
        case .missingFile(let path, let hint): "missing file \(path) (hint: \(hint))"
        case .invalidConfig(let path, let what): "\(path): \(what)"
        case .missingTensor(let name, let hint): "tensor '\(name)' not in the model's weights (hint: \(hint))"
        case .badTensor(let name, let what): "tensor '\(name)': \(what)"
        case .contextOverflow(let needed, let limit): "sequence needs \(needed) positions but the context holds \(limit)"
        case .invalidToken(let id, let vocab): "token id \(id) is outside the vocabulary (0..<\(vocab))"
        }
    }
}
