/* A TFLite external-delegate plugin that crashes when created: it dereferences NULL.
 * Used by tests/test_selection.py to check that a segfaulting vendor delegate is reported
 * as "crashed" while the caller keeps running. Built by the test with the system cc. */
#include <stddef.h>

typedef void (*report_error_fn)(const char *);

void *tflite_plugin_create_delegate(char **keys, char **values, size_t n, report_error_fn report) {
    (void)keys; (void)values; (void)n; (void)report;
    volatile int *nowhere = NULL;
    *nowhere = 42; /* SIGSEGV */
    return NULL;
}

void tflite_plugin_destroy_delegate(void *delegate) { (void)delegate; }
