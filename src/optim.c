/* optim: SGD with momentum, Adam, and the cosine schedule. */
#include "optim.h"

#include <math.h>

void optim_sgd_step(float *param, const float *grad, float *momentum_buf, const float *decay,
                    size_t n, float lr, float momentum, float weight_decay)
{
#pragma omp parallel for schedule(static) if (n > 65536)
    for (size_t i = 0; i < n; i++) {
        float wd = decay ? weight_decay * decay[i] : weight_decay;
        float g = grad[i] + wd * param[i];
        float b = momentum * momentum_buf[i] + g;
        momentum_buf[i] = b;
        param[i] -= lr * b;
    }
}

void optim_adam_step(float *param, const float *grad, float *m, float *v, size_t n, float lr,
                     float beta1, float beta2, float eps, float weight_decay, long t)
{
    double c1 = 1.0 - pow(beta1, (double)t), c2 = 1.0 - pow(beta2, (double)t);
    float step = (float)(lr / c1), inv_c2 = (float)(1.0 / c2);
    for (size_t i = 0; i < n; i++) {
        float g = grad[i] + weight_decay * param[i];
        m[i] = beta1 * m[i] + (1 - beta1) * g;
        v[i] = beta2 * v[i] + (1 - beta2) * g * g;
        param[i] -= step * m[i] / (sqrtf(v[i] * inv_c2) + eps);
    }
}

double optim_cosine_lr(double base, long step, long total, long warmup)
{
    if (warmup > 0 && step < warmup)
        return base * (double)(step + 1) / (double)warmup;
    if (total <= warmup)
        return base;
    double progress = (double)(step - warmup) / (double)(total - warmup);
    if (progress > 1.0)
        progress = 1.0;
    return 0.5 * base * (1.0 + cos(3.141592653589793 * progress));
}
