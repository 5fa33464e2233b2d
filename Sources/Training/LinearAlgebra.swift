// SVD and PCA (PiSSA's initialisation) come from LinearAlgebra, shared with PluginKit.
@_exported import LinearAlgebra
