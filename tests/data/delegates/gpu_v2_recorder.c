/* Stands in for libtensorflowlite_gpu_delegate.so to check edgetk's ctypes marshalling of
 * TfLiteGpuDelegateOptionsV2 (tensorflow/lite/delegates/gpu/delegate_options.h). The defaults it
 * returns carry recognizable values; TfLiteGpuDelegateV2Create writes the options it received to
 * the file named by $EDGETK_GPU_RECORD and returns NULL, which edgetk must report as
 * "failed_to_load" (a real library returns NULL when no OpenCL/OpenGL device is usable). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct {
    int32_t is_precision_loss_allowed;
    int32_t inference_preference;
    int32_t inference_priority1;
    int32_t inference_priority2;
    int32_t inference_priority3;
    int64_t experimental_flags;
    int32_t max_delegated_partitions;
    const char *serialization_dir;
    const char *model_token;
} TfLiteGpuDelegateOptionsV2;

TfLiteGpuDelegateOptionsV2 TfLiteGpuDelegateOptionsV2Default(void) {
    TfLiteGpuDelegateOptionsV2 o = {0, 0, 1, 0, 0, 1 /* ENABLE_QUANT */, 7, NULL, NULL};
    return o;
}

void *TfLiteGpuDelegateV2Create(const TfLiteGpuDelegateOptionsV2 *o) {
    const char *path = getenv("EDGETK_GPU_RECORD");
    if (path) {
        FILE *f = fopen(path, "w");
        if (f) {
            fprintf(f, "is_precision_loss_allowed=%d\ninference_preference=%d\ninference_priority1=%d\n",
                    o->is_precision_loss_allowed, o->inference_preference, o->inference_priority1);
            fprintf(f, "experimental_flags=%lld\nmax_delegated_partitions=%d\n",
                    (long long)o->experimental_flags, o->max_delegated_partitions);
            fprintf(f, "serialization_dir=%s\nmodel_token=%s\n",
                    o->serialization_dir ? o->serialization_dir : "(null)", o->model_token ? o->model_token : "(null)");
            fclose(f);
        }
    }
    return NULL;
}

void TfLiteGpuDelegateV2Delete(void *delegate) { (void)delegate; }
