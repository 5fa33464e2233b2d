#include "graft_plugin.h"

/* The ABI version this header defines, for tools that inspect a build. */
const uint32_t graft_plugin_abi_version = GRAFT_PLUGIN_ABI_VERSION;
