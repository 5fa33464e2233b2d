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
#define GRAFT_PLUGIN_ABI_MINOR 0
/* major << 16 | minor (a plain literal so that Swift imports it) */
#define GRAFT_PLUGIN_ABI_VERSION 0x00010000u
#define GRAFT_PLUGIN_ENTRY_SYMBOL "graft_plugin_entry_v1"

enum graft_log_level { GRAFT_LOG_DEBUG = 0, GRAFT_LOG_INFO = 1, GRAFT_LOG_WARNING = 2, GRAFT_LOG_ERROR = 3 };

/* The delta a plugin builds, owned by the host; filled through the host table's delta_* calls. */
typedef struct graft_delta_builder graft_delta_builder;

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
