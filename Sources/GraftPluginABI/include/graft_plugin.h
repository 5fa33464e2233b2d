/* Graft plugin ABI (DESIGN.md, "Plugin boundary"): the only interface between the host
 * (graft) and a strategy plugin (a shared library in the plugin directory).
 *
 * A plugin exports one symbol, GRAFT_PLUGIN_ENTRY_SYMBOL, of type graft_plugin_entry_fn. The
 * host calls it with its service table and a plugin table to fill. Both tables begin with
 * abi_version and struct_size and only ever grow at the end: a reader checks struct_size
 * before touching a field added after version 1.0 (SQLite's extension table, with the size
 * check SQLite lacks). The host refuses a plugin whose major version differs from its own.
 *
 * Only C types cross: strings are NUL-terminated UTF-8, tensors are row-major f32. Who
 * allocates frees: strings the host returns stay valid until the plugin's run returns.
 * Every status is 0 for success, nonzero for failure.
 */
#ifndef GRAFT_PLUGIN_H
#define GRAFT_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define GRAFT_PLUGIN_ABI_MAJOR 1
#define GRAFT_PLUGIN_ABI_MINOR 1
/* major << 16 | minor (a plain literal so that Swift imports it) */
#define GRAFT_PLUGIN_ABI_VERSION 0x00010001u
/* the first version of this major; a plugin built against 1.0 runs on a 1.1 host */
#define GRAFT_PLUGIN_ABI_VERSION_1_0 0x00010000u
#define GRAFT_PLUGIN_ENTRY_SYMBOL "graft_plugin_entry_v1"

enum graft_log_level { GRAFT_LOG_DEBUG = 0, GRAFT_LOG_INFO = 1, GRAFT_LOG_WARNING = 2, GRAFT_LOG_ERROR = 3 };

/* The delta a plugin builds, owned by the host; filled through the host table's delta_* calls. */
typedef struct graft_delta_builder graft_delta_builder;

/* --- 1.1 types --- */

/* A model the host opened for this run (the target, or a source opened by its configured name).
 * Host-owned; valid until the run returns; never freed by the plugin. */
typedef struct graft_model graft_model;

/* One training/scoring example: tokens[length]; labels[length] are the next-token targets in
 * Hugging Face's convention (labels[i] is the token at position i; the host shifts), -100 =
 * no loss at that position. labels == NULL means loss on every position but the first. */
typedef struct graft_example {
    const int32_t *tokens;
    const int32_t *labels;
    size_t length;
} graft_example;

/* What a traced forward returns, for the positions listed (NULL/0 = every position). Every
 * output pointer may be NULL (not wanted); sizes are in floats, row-major, P = the number of
 * chosen positions, T = length, L = layers, d = hidden, f = FFN width, H = heads, h = head size.
 * The host checks each capacity and fails the call (nothing written) when one is too small. */
typedef struct graft_forward_request {
    uint32_t struct_size;           /* sizeof(graft_forward_request) as the plugin was built */
    const int32_t *positions;       /* ascending positions in [0, T) */
    size_t position_count;
    float *logits;                  /* [P, vocab] */
    size_t logits_capacity;
    float *residual_pre_attention;  /* [L, P, d]: the residual stream entering layer l (x) */
    size_t residual_pre_attention_capacity;
    float *residual_pre_ffn;        /* [L, P, d]: after layer l's attention (a = x + o·Attn) */
    size_t residual_pre_ffn_capacity;
    float *final_hidden;            /* [P, d]: the residual after the last layer, before the final norm */
    size_t final_hidden_capacity;
    float *ffn_coefficients;        /* [L, P, f]: m = silu(gate·u) ⊙ (up·u), the input of down */
    size_t ffn_coefficients_capacity;
    float *attention_mix;           /* [L, P, H·h]: Σ_p α_{j,p} v_p per head, the input of o */
    size_t attention_mix_capacity;
    float *attention_weights;       /* [L, H, P, T]: α of each chosen position over all positions (0 after it) */
    size_t attention_weights_capacity;
} graft_forward_request;

/* A delta parameter for loss_and_gradient: the plugin's current values of a delta added to
 * one weight (`target`, a name such as model.layers.3.mlp.up_proj.weight); the host writes
 * ∂loss/∂values into gradient (same layout). kind: GRAFT_DELTA_DENSE values [out, in];
 * GRAFT_DELTA_ROWS values [k, in] at rows indices[k]; GRAFT_DELTA_COLUMNS values [out, k]. */
enum graft_delta_kind { GRAFT_DELTA_DENSE = 0, GRAFT_DELTA_ROWS = 1, GRAFT_DELTA_COLUMNS = 2 };
typedef struct graft_delta_parameter {
    const char *target;
    int32_t kind;
    const int32_t *indices;
    size_t k;
    const float *values;
    float *gradient;
} graft_delta_parameter;

/* LoRA training through the host's engine from a given initialisation (PostPKT, Seeking).
 * For each target, a[i] is A [rank, in] and b[i] is B [out, rank]; the host compensates the
 * base (W − scale·B·A, scale = alpha / rank) when compensate is nonzero so that the model
 * starts unchanged, trains with AdamW on the examples, writes the trained A, B back into
 * a[i], b[i], and (when the run's builder is given) adds the delta against the original base
 * (scale·(B′A′ − B₀A₀) when compensated) to the builder. Targets are decoder-layer
 * projections (q, k, v, o, gate, up, down), each once; AdamW has β = (0.9, 0.999), ε = 1e-8,
 * no gradient clipping; each step's loss is the mean over its examples' labelled tokens. The
 * builder must be this run's and the model its target. The model is its base again when the
 * call returns (as after every gradient service: no delta or adapter outlives a call). */
typedef struct graft_lora_request {
    uint32_t struct_size;           /* sizeof(graft_lora_request) as the plugin was built */
    const char *const *targets;
    size_t target_count;
    int32_t rank;
    float alpha;
    float *const *a;
    float *const *b;
    int32_t compensate;
    const graft_example *examples;
    size_t example_count;
    int32_t epochs;
    int32_t batch_size;             /* examples per optimizer step (gradients accumulated) */
    float learning_rate;
    float weight_decay;
    float warmup_fraction;          /* of the steps, linear warm-up then cosine decay */
    uint64_t seed;                  /* example order */
    double *final_loss;             /* the last step's mean loss, or NULL */
} graft_lora_request;

typedef struct graft_host {
    uint32_t abi_version;   /* GRAFT_PLUGIN_ABI_VERSION of the host */
    uint32_t struct_size;   /* sizeof(graft_host) as the host was built */
    void *data;             /* the host's, passed back as the first argument below */

    /* --- 1.0 --- */
    void (*log)(void *data, int32_t level, const char *message);
    /* fraction in [0, 1] */
    void (*progress)(void *data, double fraction, const char *message);
    /* nonzero when the job was cancelled: the plugin should return soon (any status) */
    int32_t (*is_cancelled)(void *data);
    /* the target model's config.json (normalised) and fingerprint */
    const char *(*model_config_json)(void *data);
    const char *(*model_fingerprint)(void *data);
    /* a 2-D weight's shape; nonzero when the model has no such tensor */
    int32_t (*tensor_shape)(void *data, const char *name, int64_t *rows, int64_t *cols);
    /* a weight widened to f32 into out[rows * cols]; capacity is out's element count */
    int32_t (*read_tensor)(void *data, const char *name, float *out, size_t capacity);
    /* token ids of text into out[capacity]; *count gets the number (may exceed capacity: call again) */
    int32_t (*tokenize)(void *data, const char *text, int32_t add_special_tokens, int32_t *out, size_t capacity, size_t *count);

    /* the delta builder; target is a weight name such as model.layers.3.mlp.up_proj.weight */
    int32_t (*delta_add_dense)(graft_delta_builder *builder, const char *target, const float *values, size_t count);
    /* rows of delta at indices[k]; values [k, in] */
    int32_t (*delta_add_rows)(graft_delta_builder *builder, const char *target, const int32_t *indices, size_t k, const float *values);
    /* columns of delta at indices[k]; values [out, k] */
    int32_t (*delta_add_columns)(graft_delta_builder *builder, const char *target, const int32_t *indices, size_t k, const float *values);
    /* scale * B A with A [rank, in], B [out, rank] */
    int32_t (*delta_add_low_rank)(graft_delta_builder *builder, const char *target, const float *a, const float *b, int32_t rank, float scale);
    /* provenance recorded in the delta's __metadata__ (strategy parameters, seeds, sources) */
    int32_t (*delta_set_metadata)(graft_delta_builder *builder, const char *key, const char *value);
    /* the last delta_* error, valid until the next call */
    const char *(*delta_last_error)(graft_delta_builder *builder);
    /* adds every entry of a Graft delta file or PEFT adapter folder, named relative to the
     * host's delta directory (the host refuses paths that leave it), to the builder */
    int32_t (*delta_add_file)(graft_delta_builder *builder, const char *relative_path);

    /* --- 1.1: model handles, traced forward, the host's compute. Read struct_size first; a NULL
     * pointer means this host does not offer the service. --- */
    /* the last error of a 1.1 call on this run, valid until the next call */
    const char *(*last_error)(void *data);
    /* the model the delta is for */
    graft_model *(*target_model)(void *data);
    /* a model by its configured name (`graft delta build --source NAME=DIR`, `graft serve --source
     * NAME=DIR`); NULL with last_error when there is none. Opened once per run (memory-mapped). */
    graft_model *(*open_model)(void *data, const char *name);
    /* config.json as the host normalised it, and the fingerprint (as model_config_json does) */
    const char *(*model_config)(graft_model *model);
    const char *(*model_fingerprint_of)(graft_model *model);
    /* any named tensor (2-D weights, 1-D norms and biases: cols = 1, the embedding); nonzero
     * when there is none */
    int32_t (*model_tensor_shape)(graft_model *model, const char *name, int64_t *rows, int64_t *cols);
    int32_t (*model_read_tensor)(graft_model *model, const char *name, float *out, size_t capacity);
    int32_t (*model_tokenize)(graft_model *model, const char *text, int32_t add_special_tokens,
                              int32_t *out, size_t capacity, size_t *count);
    /* the model's chat template applied to messages_json ([{"role": …, "content": …}, …]);
     * NUL-terminated text owned by the host until the run returns; NULL with last_error */
    const char *(*model_chat_format)(graft_model *model, const char *messages_json, int32_t add_generation_prompt);
    /* a forward pass over tokens[count] with the traces request asks for */
    int32_t (*model_forward)(graft_model *model, const int32_t *tokens, size_t count, const graft_forward_request *request);
    /* body(context, begin, end) over [0, count) split across the host's worker pool; returns
     * when all parts are done. The plugin brings no threads of its own. */
    int32_t (*parallel_for)(void *data, size_t count, void (*body)(void *context, size_t begin, size_t end), void *context);
    /* row-major C = alpha·op(A)·op(B) + beta·C with op(X) = Xᵀ when trans_x is nonzero
     * (OpenBLAS sgemm in the host's threading) */
    int32_t (*gemm)(void *data, int32_t trans_a, int32_t trans_b, size_t m, size_t n, size_t k,
                    float alpha, const float *a, size_t lda, const float *b, size_t ldb,
                    float beta, float *c, size_t ldc);

    /* --- 1.1: gradients (training issue). The host is the model engine, the plugin the algorithm. --- */
    /* the mean cross-entropy over the examples' labelled tokens of the model with W + Δ for
     * every parameter, and ∂loss/∂Δ into each parameter's gradient (overwritten, not added).
     * Parameters name 2-D weights, each at most once (indices distinct, in range); fails when
     * no position carries a label. parameter_count 0: the loss alone. loss may be NULL. */
    int32_t (*loss_and_gradient)(graft_model *model, const graft_example *examples, size_t example_count,
                                 const graft_delta_parameter *parameters, size_t parameter_count, double *loss);
    /* Σ over examples of |θ ⊙ ∂loss_e/∂θ| (one example at a time) for each named tensor, added
     * into host-owned buffers; sums[i] receives target i's buffer ([rows, cols] floats, valid
     * until the run returns; repeated calls with a target keep adding to the same buffer) */
    int32_t (*accumulate_sensitivities)(graft_model *model, const graft_example *examples, size_t example_count,
                                        const char *const *targets, size_t target_count, const float **sums);
    /* trains LoRA from a given (B, A); builder may be NULL */
    int32_t (*train_lora)(graft_model *model, const graft_lora_request *request, graft_delta_builder *builder);
} graft_host;

typedef struct graft_plugin {
    uint32_t abi_version;   /* GRAFT_PLUGIN_ABI_VERSION the plugin was built against */
    uint32_t struct_size;   /* sizeof(graft_plugin) as the plugin was built */
    void *data;             /* the plugin's */

    /* --- 1.0 --- */
    const char *name;          /* must equal the name it is loaded by */
    const char *description;
    /* Builds a delta from params_json (a JSON object). On failure returns nonzero and writes
     * a NUL-terminated message into error[error_capacity]. */
    int32_t (*run)(void *plugin_data, const graft_host *host, graft_delta_builder *builder,
                   const char *params_json, char *error, size_t error_capacity);
} graft_plugin;

/* The entry symbol. The host sets plugin->struct_size to its own sizeof(graft_plugin) and
 * zeroes the rest; the plugin fills fields up to the smaller of both sizes and returns 0. */
typedef int32_t (*graft_plugin_entry_fn)(const graft_host *host, graft_plugin *plugin);

#ifdef __cplusplus
}
#endif
#endif
