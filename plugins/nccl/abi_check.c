/* The ABI header compiled as C (NCCL's own plugins are C): its layout checks run under the C
 * compiler as well as the C++ one (the plugin's shim includes it from C++). */
#include "nccl_net_abi.h"

/* A table of the newest version with every member NCCL may see as NULL left NULL
 * (nccl-net-abi.md section 2.7), to show the declarations take C initializers. */
static const braid_ncclNet_v11_t kShape = {
    .name = "braid",
    .regMrDmaBuf = NULL,
    .getDeviceMr = NULL,
    .irecvConsumed = NULL,
    .makeVDevice = NULL,
    .setNetAttr = NULL,
};

const char* braid_nccl_abi_name(void) { return kShape.name; }
