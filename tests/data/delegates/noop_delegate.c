/* A well-formed TFLite external-delegate plugin that claims no nodes.
 *
 * TfLiteDelegate (tensorflow/lite/core/c/common.h) is laid out as
 *   void *data_; Prepare; CopyFromBufferHandle; CopyToBufferHandle; FreeBufferHandle;
 *   int64_t flags; void *opaque_delegate_builder;
 * Prepare returns kTfLiteOk (0) without replacing any node, so the interpreter runs the whole
 * graph on its CPU kernels: edgetk must report the delegate as "rejected" (took 0 nodes).
 * With the option fail=1 the plugin reports an error and returns NULL instead ("failed_to_load");
 * with sleep=N it sleeps N seconds first (a delegate that hangs: the probe's timeout must fire).
 * Every created delegate appends its options to the file named by option log=PATH. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef void (*report_error_fn)(const char *);

typedef struct {
    void *data_;
    int (*Prepare)(void *context, void *delegate);
    void *CopyFromBufferHandle;
    void *CopyToBufferHandle;
    void *FreeBufferHandle;
    int64_t flags;
    void *opaque_delegate_builder;
} Delegate;

static int prepare_nothing(void *context, void *delegate) {
    (void)context; (void)delegate;
    return 0;
}

void *tflite_plugin_create_delegate(char **keys, char **values, size_t n, report_error_fn report) {
    const char *log = NULL;
    int fail = 0;
    unsigned sleep_s = 0;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(keys[i], "fail") == 0) fail = strcmp(values[i], "1") == 0;
        if (strcmp(keys[i], "sleep") == 0) sleep_s = (unsigned)atoi(values[i]);
        if (strcmp(keys[i], "log") == 0) log = values[i];
    }
    if (log) {
        FILE *f = fopen(log, "a");
        if (f) {
            for (size_t i = 0; i < n; i++) fprintf(f, "%s=%s\n", keys[i], values[i]);
            fclose(f);
        }
    }
    if (sleep_s) sleep(sleep_s);
    if (fail) {
        if (report) report("noop delegate: asked to fail");
        return NULL;
    }
    Delegate *d = calloc(1, sizeof(Delegate));
    d->Prepare = prepare_nothing;
    return d;
}

void tflite_plugin_destroy_delegate(void *delegate) { free(delegate); }
