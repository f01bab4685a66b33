/* libmicrohttpd, loaded when `serve` starts (dlopen), not when corpuslens
 * starts: linked, it brought GnuTLS and seven more shared libraries into every
 * command's start-up (tests/startup_libs.sh), though only serve uses it.
 * Include after <microhttpd.h>: the MHD_* calls below go through the table. */
#ifndef CORPUSLENS_SERVE_MHD_H
#define CORPUSLENS_SERVE_MHD_H

#include <microhttpd.h>

typedef struct {
    struct MHD_Daemon *(*start_daemon)(unsigned int, uint16_t, MHD_AcceptPolicyCallback, void *,
                                       MHD_AccessHandlerCallback, void *, ...);
    void (*stop_daemon)(struct MHD_Daemon *);
    const union MHD_DaemonInfo *(*get_daemon_info)(struct MHD_Daemon *, enum MHD_DaemonInfoType, ...);
    enum MHD_Result (*add_response_header)(struct MHD_Response *, const char *, const char *);
    struct MHD_Response *(*create_response_from_buffer)(size_t, void *, enum MHD_ResponseMemoryMode);
    void (*destroy_response)(struct MHD_Response *);
    const char *(*lookup_connection_value)(struct MHD_Connection *, enum MHD_ValueKind, const char *);
    enum MHD_Result (*queue_response)(struct MHD_Connection *, unsigned int, struct MHD_Response *);
    void (*resume_connection)(struct MHD_Connection *);
    void (*suspend_connection)(struct MHD_Connection *);
} cl_mhd_api;

extern cl_mhd_api cl_mhd;

/* Load the library once (libmicrohttpd.so.12). 0, or -1 with cl_error. */
int cl_mhd_load(void);

#define MHD_start_daemon cl_mhd.start_daemon
#define MHD_stop_daemon cl_mhd.stop_daemon
#define MHD_get_daemon_info cl_mhd.get_daemon_info
#define MHD_add_response_header cl_mhd.add_response_header
#define MHD_create_response_from_buffer cl_mhd.create_response_from_buffer
#define MHD_destroy_response cl_mhd.destroy_response
#define MHD_lookup_connection_value cl_mhd.lookup_connection_value
#define MHD_queue_response cl_mhd.queue_response
#define MHD_resume_connection cl_mhd.resume_connection
#define MHD_suspend_connection cl_mhd.suspend_connection

#endif
