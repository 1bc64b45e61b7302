/* optim: optimizers and learning-rate schedules on flat parameter buffers.
 * Parameters, gradients and optimizer state share one layout, so a step is one loop. */
#ifndef OFFNAS_OPTIM_H
#define OFFNAS_OPTIM_H

#include <stddef.h>

/* SGD with momentum and weight decay, PyTorch semantics:
 * buf = momentum * buf + (grad + weight_decay * param); param -= lr * buf.
 * decay (may be NULL: decay everything) is a per-element 0/1 mask of which params decay. */
void optim_sgd_step(float *param, const float *grad, float *momentum_buf, const float *decay,
                    size_t n, float lr, float momentum, float weight_decay);

/* Adam (Kingma and Ba) with bias correction; step t counts from 1. Weight decay is added to
 * the gradient (L2, as in torch.optim.Adam). */
void optim_adam_step(float *param, const float *grad, float *m, float *v, size_t n, float lr,
                     float beta1, float beta2, float eps, float weight_decay, long t);

/* Learning rate at step (0-based) of total: linear warm-up over warmup steps, then a cosine
 * decay from base to 0 at step total. */
double optim_cosine_lr(double base, long step, long total, long warmup);

#endif
