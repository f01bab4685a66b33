/* libmicrohttpd through dlopen (serve_mhd.h). */
#include <dlfcn.h>
#include <stdint.h>
#include <sys/socket.h>

#include <microhttpd.h>

#include "corpuslens/base/error.h"
#include "serve/serve_mhd.h"

cl_mhd_api cl_mhd;

int cl_mhd_load(void) {
    static int loaded;
    if (loaded) return 0;
    const char *name = "libmicrohttpd.so.12";
    void *h = dlopen(name, RTLD_NOW | RTLD_LOCAL);
    if (!h) return cl_error("cannot load %s: %s (Debian: apt-get install libmicrohttpd12)", name, dlerror());
    struct {
        const char *sym;
        void **dst;
    } t[] = {{"MHD_start_daemon", (void **)&cl_mhd.start_daemon},
             {"MHD_stop_daemon", (void **)&cl_mhd.stop_daemon},
             {"MHD_get_daemon_info", (void **)&cl_mhd.get_daemon_info},
             {"MHD_add_response_header", (void **)&cl_mhd.add_response_header},
             {"MHD_create_response_from_buffer", (void **)&cl_mhd.create_response_from_buffer},
             {"MHD_destroy_response", (void **)&cl_mhd.destroy_response},
             {"MHD_lookup_connection_value", (void **)&cl_mhd.lookup_connection_value},
             {"MHD_queue_response", (void **)&cl_mhd.queue_response},
             {"MHD_resume_connection", (void **)&cl_mhd.resume_connection},
             {"MHD_suspend_connection", (void **)&cl_mhd.suspend_connection}};
    for (size_t i = 0; i < sizeof t / sizeof *t; i++) {
        *t[i].dst = dlsym(h, t[i].sym);
        if (!*t[i].dst) return cl_error("%s has no %s: a libmicrohttpd too old or too new", name, t[i].sym);
    }
    loaded = 1;
    return 0;
}
