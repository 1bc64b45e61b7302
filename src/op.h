/* op: forward/backward pairs of every layer type, on float32 tensors in NHWC layout.
 *
 * NHWC (channels last) makes a 1x1 convolution one GEMM over the whole batch and lets the
 * depthwise convolution, batch norm and activations run contiguous over channels.
 * Conventions (after llm.c): arguments are ordered outputs, inputs, weights, sizes; a comment
 * gives each tensor's shape. Backward functions ACCUMULATE (+=) into parameter gradients
 * (dw, dgamma, ...), which the caller zeroes once per step, and OVERWRITE activation
 * gradients (din). Unless a function says otherwise, outputs must not alias inputs.
 * N below is the number of pixels B*H*W.
 *
 *     op_pointwise_forward(out, in, w, N, Ci, Co);          // out (N,Co) = in (N,Ci) @ w (Ci,Co)
 *     op_pointwise_backward(din, dw, dout, in, w, N, Ci, Co);
 */
#ifndef OFFNAS_OP_H
#define OFFNAS_OP_H

#include <stddef.h>

/* One candidate operation of a searchable layer: an inverted residual block with depthwise
 * kernel k and expansion e, or skip (identity; only where stride is 1 and channels match). */
enum op_kind { OP_BLOCK = 0, OP_SKIP = 1 };
struct op_spec {
    int kind;   /* enum op_kind */
    int kernel; /* 3, 5 or 7 (blocks only) */
    int expand; /* 1..8 (blocks only) */
};

/* Parses "k3e6" or "skip" into *spec. Returns 0, or -1 with an error naming the text. */
int op_spec_parse(struct op_spec *spec, const char *text);
/* Writes the canonical name ("k3e6", "skip") into buf (at least 16 bytes). Returns buf. */
char *op_spec_name(const struct op_spec *spec, char *buf);

/* Output side of a convolution with kernel k, stride s and padding k/2 on an input of side n. */
static inline int op_conv_out_size(int n, int k, int stride) { return (n + 2 * (k / 2) - k) / stride + 1; }

/* Dense k x k convolution, padding k/2, via im2col + sgemm.
 * out (B,Ho,Wo,Co), in (B,H,W,Ci), w (k,k,Ci,Co), col scratch (B*Ho*Wo, k*k*Ci).
 * Forward leaves the im2col matrix in col; backward reuses it (so col must be unchanged). */
void op_conv_forward(float *out, float *col, const float *in, const float *w, int B, int H, int W,
                     int Ci, int Co, int k, int stride);
/* din (B,H,W,Ci) may be NULL (input gradient not needed); dcol scratch like col. */
void op_conv_backward(float *din, float *dw, float *dcol, const float *dout, const float *col,
                      const float *w, int B, int H, int W, int Ci, int Co, int k, int stride);

/* Pointwise (1x1) convolution as one GEMM: out (N,Co) = in (N,Ci) @ w (Ci,Co). */
void op_pointwise_forward(float *out, const float *in, const float *w, int N, int Ci, int Co);
/* din (N,Ci) may be NULL. dw (Ci,Co) accumulates; NULL skips it. */
void op_pointwise_backward(float *din, float *dw, const float *dout, const float *in,
                           const float *w, int N, int Ci, int Co);

/* Inference (eval-mode batch norm): a convolution, its batch norm as the per-channel affine of
 * op_batchnorm_eval_fold and its activation in one pass, out = act(conv(in) * scale + shift
 * [+ residual]), act ReLU6 when relu6. out must not alias in (or residual, for the pointwise
 * one). Per image the same bits whatever the batch and the thread count. */
void op_batchnorm_eval_fold(float *scale, float *shift, const float *gamma, const float *beta,
                            const float *running_mean, const float *running_var, int C);
void op_conv_affine_forward(float *out, const float *in, const float *w, const float *scale,
                            const float *shift, int B, int H, int W, int Ci, int Co, int k,
                            int stride, int relu6);
void op_pointwise_affine_forward(float *out, const float *in, const float *w, const float *scale,
                                 const float *shift, const float *residual, int N, int Ci, int Co,
                                 int relu6);
void op_depthwise_affine_forward(float *out, const float *in, const float *w, const float *scale,
                                 const float *shift, int B, int H, int W, int C, int k, int stride,
                                 int relu6);

/* Depthwise k x k convolution, padding k/2, stride 1 or 2.
 * out (B,Ho,Wo,C), in (B,H,W,C), w (k,k,C). */
void op_depthwise_forward(float *out, const float *in, const float *w, int B, int H, int W, int C,
                          int k, int stride);
/* din may be NULL; dw (k,k,C) accumulates; NULL skips it. */
void op_depthwise_backward(float *din, float *dw, const float *dout, const float *in,
                           const float *w, int B, int H, int W, int C, int k, int stride);

/* op_pointwise_forward that also returns the sums a training-mode batch norm of out needs:
 * sums (2*Co) = per channel sum (out - out[0]) then sum (out - out[0])^2, out[0] its first row.
 * The GEMM runs in chunks of rows and each chunk is summed while it is still in cache; with
 * one thread out and the sums are the same bits as op_pointwise_forward and the batch norm's
 * own pass. */
void op_pointwise_forward_sums(float *out, double *sums, const float *in, const float *w, int N,
                               int Ci, int Co);
/* The input gradient of op_pointwise_backward, din (N,Ci) = dout (N,Co) w^T, with the sums the
 * backward of a batch norm + ReLU6 whose input was x (N,Ci) needs (its mean, rstd, gamma,
 * beta): sums (2*Ci) = per channel sum g', then sum g' (x - mean), g' = din masked by the
 * ReLU6. In chunks as op_pointwise_forward_sums; the same bits with one thread. */
void op_pointwise_din_sums(float *din, double *sums, const float *dout, const float *w, int N,
                           int Ci, int Co, const float *x, const float *mean, const float *rstd,
                           const float *gamma, const float *beta);

/* Batch normalisation over N pixels per channel, eps 1e-5.
 * training != 0: normalise with the batch statistics, save them in mean/rstd (C), and update
 * running_mean/running_var (C) with the given momentum (new = (1-m)*old + m*batch, the batch
 * variance unbiased as in PyTorch). training == 0: normalise with the running averages.
 * out (N,C) may alias in (N,C) only when training == 0. */
void op_batchnorm_forward(float *out, float *mean, float *rstd, const float *in, const float *gamma,
                          const float *beta, float *running_mean, float *running_var, int N, int C,
                          int training, float momentum);
/* Backward of the training-mode forward. din (N,C) may alias dout. */
void op_batchnorm_backward(float *din, float *dgamma, float *dbeta, const float *dout,
                           const float *in, const float *mean, const float *rstd,
                           const float *gamma, int N, int C);

/* Batch norm followed by ReLU6 in one pass (the pair every block uses): out = relu6(bn(in)).
 * out must not alias in. The backward masks the gradient by the forward's output, recomputed
 * from in, mean, rstd, gamma and beta (bit for bit the forward's: it is not read back), then
 * runs the batch-norm backward; din may alias dout. Same results as the two ops in turn. */
void op_batchnorm_relu6_forward(float *out, float *mean, float *rstd, const float *in,
                                const float *gamma, const float *beta, float *running_mean,
                                float *running_var, int N, int C, int training, float momentum);
void op_batchnorm_relu6_backward(float *din, float *dgamma, float *dbeta, const float *dout,
                                 const float *in, const float *mean, const float *rstd,
                                 const float *gamma, const float *beta, int N, int C);

/* The training-mode forward (then ReLU6 when relu6) with the sums of op_pointwise_forward_sums
 * instead of a pass of its own over in. */
void op_batchnorm_sums_forward(float *out, float *mean, float *rstd, const float *in,
                               const double *sums, const float *gamma, const float *beta,
                               float *running_mean, float *running_var, int N, int C,
                               float momentum, int relu6);
/* op_batchnorm_relu6_backward with the sums of op_pointwise_din_sums. */
void op_batchnorm_relu6_sums_backward(float *din, float *dgamma, float *dbeta, const float *dout,
                                      const double *sums, const float *in, const float *mean,
                                      const float *rstd, const float *gamma, const float *beta,
                                      int N, int C);

/* The backward of a block's expand convolution a (N,C) = x (N,Ci) w (Ci,C) and the batch norm
 * + ReLU6 that follows it (training mode; mean, rstd of a's batch statistics). From g
 * (N,C), the gradient at the ReLU6's output (overwritten with the gradient of a), adds dgamma,
 * dbeta and dw (Ci,C; NULL skips it) and writes dx (N,Ci). The same as
 * op_batchnorm_relu6_backward then op_pointwise_backward, chunk by chunk so each chunk of the
 * batch norm's gradient is read by both products from cache. */
void op_batchnorm_relu6_pointwise_backward(float *dx, float *dw, float *dgamma, float *dbeta,
                                           float *g, const float *a, const float *x,
                                           const float *w, const float *mean, const float *rstd,
                                           const float *gamma, const float *beta, int N, int Ci,
                                           int C);

/* ReLU6: out = min(max(in, 0), 6); out may alias in. */
void op_relu6_forward(float *out, const float *in, size_t n);
/* din = dout where 0 < out < 6, else 0; takes the forward OUTPUT; din may alias dout. */
void op_relu6_backward(float *din, const float *dout, const float *out, size_t n);

/* Residual add: out = a + b (out may alias a or b). Its backward is the identity to both. */
void op_add_forward(float *out, const float *a, const float *b, size_t n);

/* Global average pool: out (B,C) = mean over H*W of in (B,H,W,C). */
void op_avgpool_forward(float *out, const float *in, int B, int HW, int C);
void op_avgpool_backward(float *din, const float *dout, int B, int HW, int C);

/* Linear: out (B,Out) = in (B,In) @ w (In,Out) + bias (Out). Backward: din may be NULL; dw
 * and dbias accumulate, NULL skips them. */
void op_linear_forward(float *out, const float *in, const float *w, const float *bias, int B, int In,
                       int Out);
void op_linear_backward(float *din, float *dw, float *dbias, const float *dout, const float *in,
                        const float *w, int B, int In, int Out);

/* Softmax cross-entropy with optional label smoothing eps (target: 1-eps on the label, eps/K
 * spread over all K classes). probs (B,K) receives the softmax; returns the mean loss over B.
 * correct (may be NULL) receives the number of argmax hits. */
float op_softmax_xent_forward(float *probs, int *correct, const float *logits,
                              const unsigned char *labels, int B, int K, float label_smoothing);
/* dlogits (B,K) = (probs - target) / B. dlogits may alias probs. */
void op_softmax_xent_backward(float *dlogits, const float *probs, const unsigned char *labels,
                              int B, int K, float label_smoothing);

/* Channel mask: out (N,C) = in (N,C) * mask (C). out may alias in.
 * Backward: din = dout * mask (din may alias dout), dmask (C) += sum over N of dout * in,
 * which is the straight-through gradient of a hard 0/1 mask. dmask may be NULL. */
void op_channel_mask_forward(float *out, const float *in, const float *mask, int N, int C);
void op_channel_mask_backward(float *din, float *dmask, const float *dout, const float *in,
                              const float *mask, int N, int C);

/* Threads used by the ops and BLAS (0: all cores). Applies to the whole process. */
void op_set_threads(int threads);
int op_get_threads(void);
/* The name of the kernels OpenBLAS loaded (e.g. "SkylakeX", "Haswell"): OPENBLAS_CORETYPE or
 * its own choice; benchmarks print it beside their figures. */
const char *op_blas_core(void);

#endif
