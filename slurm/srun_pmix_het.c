/* A work-around for a Slurm bug, preloaded into `srun` by slurm/search-het.sbatch:
 *
 *   LD_PRELOAD=build/libsrun_pmix_het.so srun --mpi=pmix --het-group=0,1 PROGRAM ...
 *
 * The bug (Slurm 17.11 up to 24.05.3; SchedMD ticket 16817, fixed in 24.05.4 by commit
 * 0c09abc868 "mpi/pmix - avoid races for abort EIO threads" and in 24.11 by a2e9643694 "Prevent
 * mutiple abort agents"): for a heterogeneous step srun runs each component's launch in its own
 * thread, and each calls the mpi/pmix plugin's pmixp_abort_agent_start() at the start and
 * pmixp_abort_agent_stop() at the end. Both keep the abort agent's thread and event handle in
 * the same two static variables without a lock, so concurrent calls mix them up, and the stop
 * of one component then joins a thread that never ends (or was already joined): srun hangs
 * forever after every rank has exited and the step has completed.
 *
 * This library defines both functions, so the plugin's calls (through its PLT) come here, and
 * calls the plugin's own ones one at a time under a mutex. Serialized, the second start simply
 * replaces the first agent (that one keeps serving its port until srun exits, as it does with
 * the unpatched plugin), the first stop shuts down and joins the second agent and clears the
 * thread id, and the later stop sees no agent left. Nothing else changes. On a Slurm without
 * these functions (another plugin, a renamed function) the library is inert.
 *
 * It removes itself from LD_PRELOAD when loaded, so srun does not pass it on to the ranks.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <link.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

int pmixp_abort_agent_start(char ***env);
int pmixp_abort_agent_stop(void);

static pthread_mutex_t agent_lock = PTHREAD_MUTEX_INITIALIZER;

struct lookup {
    const char *name;
    void *self; /* this library's definition, to be skipped */
    void *found;
};

static int find_in_object(struct dl_phdr_info *info, size_t size, void *data)
{
    (void)size;
    struct lookup *l = data;
    if (info->dlpi_name == NULL || info->dlpi_name[0] == '\0')
        return 0;
    void *h = dlopen(info->dlpi_name, RTLD_LAZY | RTLD_NOLOAD);
    if (h == NULL)
        return 0;
    void *f = dlsym(h, l->name);
    dlclose(h);
    if (f != NULL && f != l->self) {
        l->found = f;
        return 1;
    }
    return 0;
}

/* The plugin's own NAME: the plugin is dlopen'ed RTLD_LOCAL, so RTLD_NEXT may not see it; look
 * through every loaded object for a definition that is not ours. Called with agent_lock held. */
static void *real(const char *name, void *self)
{
    void *f = dlsym(RTLD_NEXT, name);
    if (f != NULL && f != self)
        return f;
    struct lookup l = {name, self, NULL};
    dl_iterate_phdr(find_in_object, &l);
    return l.found;
}

int pmixp_abort_agent_start(char ***env)
{
    static int (*start)(char ***);
    pthread_mutex_lock(&agent_lock);
    if (start == NULL)
        start = (int (*)(char ***))real("pmixp_abort_agent_start", (void *)pmixp_abort_agent_start);
    int rc = start != NULL ? start(env) : -1;
    pthread_mutex_unlock(&agent_lock);
    return rc;
}

int pmixp_abort_agent_stop(void)
{
    static int (*stop)(void);
    pthread_mutex_lock(&agent_lock);
    if (stop == NULL)
        stop = (int (*)(void))real("pmixp_abort_agent_stop", (void *)pmixp_abort_agent_stop);
    int rc = stop != NULL ? stop() : -1;
    pthread_mutex_unlock(&agent_lock);
    return rc;
}

/* Drop this library's entry from LD_PRELOAD (srun copies its environment into the ranks'). */
__attribute__((constructor)) static void unpreload(void)
{
    const char *preload = getenv("LD_PRELOAD");
    Dl_info self;
    if (preload == NULL || !dladdr((void *)unpreload, &self) || self.dli_fname == NULL)
        return;
    const char *base = strrchr(self.dli_fname, '/');
    base = base != NULL ? base + 1 : self.dli_fname;
    size_t n = strlen(preload);
    char *kept = malloc(n + 1), *copy = strdup(preload);
    if (kept == NULL || copy == NULL) {
        free(kept);
        free(copy);
        return;
    }
    kept[0] = '\0';
    for (char *save = NULL, *tok = strtok_r(copy, " :", &save); tok != NULL;
         tok = strtok_r(NULL, " :", &save)) {
        const char *tb = strrchr(tok, '/');
        tb = tb != NULL ? tb + 1 : tok;
        if (strcmp(tb, base) == 0)
            continue;
        if (kept[0] != '\0')
            strcat(kept, " ");
        strcat(kept, tok);
    }
    if (kept[0] == '\0')
        unsetenv("LD_PRELOAD");
    else
        setenv("LD_PRELOAD", kept, 1);
    free(kept);
    free(copy);
}
