// LSTM (ONNX, layout 0, gate order i, o, f, c; no peepholes, no clip), forward, reverse or both
// directions, zero initial state. X: [T, B, I], W: [D, 4H, I], R: [D, 4H, H], Bias: [D, 8H]
// (Wb then Rb; optional); Y: [T, D, B, H]. Per direction and step, with h, c the previous state:
//   z = X_t W^T + h R^T + Wb + Rb,  i = s(z_i), o = s(z_o), f = s(z_f), g = tanh(z_c)
//   c_t = f c + i g,  h_t = o tanh(c_t)
// Backward through time (dh, dc flow from step t + 1 to t):
//   dh = g_Y_t + dz_{t+1} R,  dc = dh o (1 - tc^2) + dc_{t+1} f_{t+1}       (tc = tanh c_t)
//   dz_o = dh tc o(1-o), dz_i = dc g i(1-i), dz_f = dc c f(1-f), dz_c = dc i (1-g^2)
//   g_X_t = dz W,  g_W += dz^T X_t,  g_R += dz^T h,  g_Wb = g_Rb += sum_b dz
// The JVP runs the tangent of the forward recursion (z', i', ..., c', h'); the VJP tangent runs the
// tangent of the backward recursion beside it: every line above differentiated by the product
// rule, with the primal tangents (the second-order part) and the output-gradient tangent g_Y'.
#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "src/core/internal/gemm.h"
#include "src/core/internal/rnn_checks.h"
#include "src/core/ops.h"

namespace curv {
namespace {

using internal::gemm;

template <class T>
T sig(T x) {
  return T(1) / (T(1) + std::exp(-x));
}

class LstmOp final : public OpImpl<LstmOp> {
 public:
  LstmOp(std::int64_t hidden, std::string direction) : m_hidden(hidden), m_direction(std::move(direction)) {
    internal::check_rnn_attrs(type(), m_hidden, m_direction);
  }
  std::string type() const override { return "LSTM"; }
  OpSpec spec() const override { return OpSpec(type()).set_int("hidden_size", m_hidden).set("direction", m_direction); }
  int arity() const override { return -1; }
  bool tangent_reads_output_grad() const override { return true; }
  std::int64_t dirs() const { return m_direction == "bidirectional" ? 2 : 1; }

  Shape output_shape(const std::vector<Shape>& in) const override {
    return internal::rnn_output_shape(type(), in, dirs(), m_hidden, 4, 4);  // saves 4H per sample and step
  }

  struct Dims {
    std::int64_t T, B, I, H, G, D;
  };
  template <class T>
  Dims dims(const OpCtx<T>& c) const {
    return {c.in[0].dim(0), c.in[0].dim(1), c.in[0].dim(2), m_hidden, 4 * m_hidden, dirs()};
  }
  // Time index of step s in direction d.
  std::int64_t time(const Dims& d, std::int64_t dir, std::int64_t s) const {
    const bool rev = m_direction == "reverse" || dir == 1;
    return rev ? d.T - 1 - s : s;
  }

  // The forward recursion of one direction. x, w, r, b: X and this direction's weights (b may be
  // null). acts: [T, B, 4H] (i, o, f, g after activation), cs, hs: [T, B, H] by time index.
  template <class T>
  void run_forward(const Dims& d, std::int64_t dir, const T* x, const T* w, const T* r, const T* b, T* acts, T* cs,
                   T* hs) const {
    const std::int64_t B = d.B, H = d.H, G = d.G;
    std::vector<T> z(B * G);
    for (std::int64_t s = 0; s < d.T; ++s) {
      const std::int64_t t = time(d, dir, s), tp = s > 0 ? time(d, dir, s - 1) : -1;
      gemm(false, true, x + t * B * d.I, B, d.I, w, G, d.I, z.data(), T(1), false);
      if (tp >= 0) gemm(false, true, hs + tp * B * H, B, H, r, G, H, z.data(), T(1), true);
      for (std::int64_t n = 0; n < B; ++n) {
        T* zn = z.data() + n * G;
        T* a = acts + (t * B + n) * G;
        for (std::int64_t k = 0; k < G; ++k) {
          const T v = zn[k] + (b ? b[k] + b[G + k] : T(0));
          a[k] = k < 3 * H ? sig(v) : std::tanh(v);
        }
        const T* cp = tp >= 0 ? cs + (tp * B + n) * H : nullptr;
        T* cn = cs + (t * B + n) * H;
        T* hn = hs + (t * B + n) * H;
        for (std::int64_t j = 0; j < H; ++j) {
          cn[j] = a[2 * H + j] * (cp ? cp[j] : T(0)) + a[j] * a[3 * H + j];
          hn[j] = a[H + j] * std::tanh(cn[j]);
        }
      }
    }
  }

  // The tangent of the forward recursion: x', w', r', b' (any may be null = 0) give ta = acts',
  // tc = c', th = h' (layouts as acts, cs, hs).
  template <class T>
  void run_tangent(const Dims& d, std::int64_t dir, const T* x, const T* w, const T* r, const T* acts, const T* cs,
                   const T* hs, const T* tx, const T* tw, const T* tr, const T* tb, T* ta, T* tcs, T* ths) const {
    const std::int64_t B = d.B, H = d.H, G = d.G;
    std::vector<T> z(B * G);
    for (std::int64_t s = 0; s < d.T; ++s) {
      const std::int64_t t = time(d, dir, s), tp = s > 0 ? time(d, dir, s - 1) : -1;
      std::fill(z.begin(), z.end(), T(0));
      if (tx) gemm(false, true, tx + t * B * d.I, B, d.I, w, G, d.I, z.data(), T(1), true);
      if (tw) gemm(false, true, x + t * B * d.I, B, d.I, tw, G, d.I, z.data(), T(1), true);
      if (tp >= 0) {
        gemm(false, true, ths + tp * B * H, B, H, r, G, H, z.data(), T(1), true);
        if (tr) gemm(false, true, hs + tp * B * H, B, H, tr, G, H, z.data(), T(1), true);
      }
      for (std::int64_t n = 0; n < B; ++n) {
        const T* a = acts + (t * B + n) * G;
        T* at = ta + (t * B + n) * G;
        for (std::int64_t k = 0; k < G; ++k) {
          const T v = z[n * G + k] + (tb ? tb[k] + tb[G + k] : T(0));
          at[k] = k < 3 * H ? a[k] * (T(1) - a[k]) * v : (T(1) - a[k] * a[k]) * v;
        }
        const T* cp = tp >= 0 ? cs + (tp * B + n) * H : nullptr;
        const T* tcp = tp >= 0 ? tcs + (tp * B + n) * H : nullptr;
        const T* cn = cs + (t * B + n) * H;
        T* tcn = tcs + (t * B + n) * H;
        T* thn = ths + (t * B + n) * H;
        for (std::int64_t j = 0; j < H; ++j) {
          const T i = a[j], o = a[H + j], f = a[2 * H + j], g = a[3 * H + j];
          tcn[j] = at[2 * H + j] * (cp ? cp[j] : T(0)) + f * (tcp ? tcp[j] : T(0)) + at[j] * g + i * at[3 * H + j];
          const T tc = std::tanh(cn[j]);
          thn[j] = at[H + j] * tc + o * (T(1) - tc * tc) * tcn[j];
        }
      }
    }
  }

  template <class T>
  void fwd(OpCtx<T>& c, View<T> out) const {
    const Dims d = dims(c);
    auto& st = c.state->saved;
    st.resize(3);
    st[0].resize({d.D, d.T, d.B, d.G});
    st[1].resize({d.D, d.T, d.B, d.H});
    st[2].resize({d.D, d.T, d.B, d.H});
    const T* b = c.in.size() == 4 ? c.in[3].data : nullptr;
    for (std::int64_t dir = 0; dir < d.D; ++dir) {
      T* hs = st[2].data() + dir * d.T * d.B * d.H;
      run_forward(d, dir, c.in[0].data, c.in[1].data + dir * d.G * d.I, c.in[2].data + dir * d.G * d.H,
                  b ? b + dir * 2 * d.G : nullptr, st[0].data() + dir * d.T * d.B * d.G,
                  st[1].data() + dir * d.T * d.B * d.H, hs);
      scatter_y(d, dir, hs, out.data);
    }
  }
  // Y[t, dir] = hs[t] for every t.
  template <class T>
  static void scatter_y(const Dims& d, std::int64_t dir, const T* hs, T* y) {
    const std::int64_t BH = d.B * d.H;
    for (std::int64_t t = 0; t < d.T; ++t) std::copy(hs + t * BH, hs + (t + 1) * BH, y + (t * d.D + dir) * BH);
  }

  template <class T>
  void bwd(OpCtx<T>& c) const {
    const Dims d = dims(c);
    for (auto& g : c.gin)
      if (g.data) g.set_zero();
    for (std::int64_t dir = 0; dir < d.D; ++dir)
      backward_dir<T>(c, d, dir, c.gout.data, nullptr, c.gin[0].data, c.gin[1].data, c.gin[2].data,
                      c.gin.size() == 4 ? c.gin[3].data : nullptr, false, 0);
  }

  template <class T>
  void tan(OpCtx<T>& c) const {
    const Dims d = dims(c);
    const auto& st = c.state->saved;
    const std::int64_t nx = c.in[0].size(), nw = c.in[1].size(), nr = c.in[2].size(), ny = d.T * d.D * d.B * d.H;
    const std::int64_t per = d.T * d.B;
    std::vector<T> ta(per * d.G), tcs(per * d.H), ths(per * d.H);
    for (std::int64_t j = 0; j < c.k; ++j)
      for (std::int64_t dir = 0; dir < d.D; ++dir) {
        const T* tb = c.in.size() == 4 && c.tin[3].data ? c.tin[3].data + j * 2 * d.D * d.G + dir * 2 * d.G : nullptr;
        run_tangent(d, dir, c.in[0].data, c.in[1].data + dir * d.G * d.I, c.in[2].data + dir * d.G * d.H,
                    st[0].data() + dir * per * d.G, st[1].data() + dir * per * d.H, st[2].data() + dir * per * d.H,
                    c.tin[0].data ? c.tin[0].data + j * nx : nullptr,
                    c.tin[1].data ? c.tin[1].data + j * nw + dir * d.G * d.I : nullptr,
                    c.tin[2].data ? c.tin[2].data + j * nr + dir * d.G * d.H : nullptr, tb, ta.data(), tcs.data(),
                    ths.data());
        scatter_y(d, dir, ths.data(), c.tout.data + j * ny);
      }
  }

  template <class T>
  void bwdt(OpCtx<T>& c) const {
    const Dims d = dims(c);
    const std::int64_t nx = c.in[0].size(), nw = c.in[1].size(), nr = c.in[2].size(), ny = d.T * d.D * d.B * d.H;
    const std::int64_t nb = c.in.size() == 4 ? c.in[3].size() : 0;
    for (std::int64_t j = 0; j < c.k; ++j) {
      T* gx = c.tgin[0].data ? c.tgin[0].data + j * nx : nullptr;
      T* gw = c.tgin[1].data ? c.tgin[1].data + j * nw : nullptr;
      T* gr = c.tgin[2].data ? c.tgin[2].data + j * nr : nullptr;
      T* gb = nb && c.tgin[3].data ? c.tgin[3].data + j * nb : nullptr;
      if (gx) std::fill(gx, gx + nx, T(0));
      if (gw) std::fill(gw, gw + nw, T(0));
      if (gr) std::fill(gr, gr + nr, T(0));
      if (gb) std::fill(gb, gb + nb, T(0));
      for (std::int64_t dir = 0; dir < d.D; ++dir)
        backward_dir<T>(c, d, dir, c.gout.data, c.tgout.data + j * ny, gx, gw, gr, gb, c.second_order, j);
    }
  }

 private:
  // Backward through time of one direction, adding into gx, gw, gr, gb (null: not wanted). With
  // tgy null: the VJP of gy. Otherwise the VJP tangent for direction j: the outputs receive the
  // tangent of the VJP for output gradient gy and its tangent tgy, with the second-order terms
  // (from the primal tangents of c.tin, direction j) when `so`.
  template <class T>
  void backward_dir(OpCtx<T>& c, const Dims& d, std::int64_t dir, const T* gy, const T* tgy, T* gx, T* gw, T* gr, T* gb,
                    bool so, std::int64_t j) const {
    const std::int64_t B = d.B, H = d.H, G = d.G, I = d.I, per = d.T * B;
    const auto& st = c.state->saved;
    const T* acts = st[0].data() + dir * per * G;
    const T* cs = st[1].data() + dir * per * H;
    const T* hs = st[2].data() + dir * per * H;
    const T* x = c.in[0].data;
    const T* w = c.in[1].data + dir * G * I;
    const T* r = c.in[2].data + dir * G * H;
    const std::int64_t off_w = dir * G * I, off_r = dir * G * H, off_b = dir * 2 * G;
    if (gw) gw += off_w;
    if (gr) gr += off_r;
    if (gb) gb += off_b;
    const bool tangent = tgy != nullptr;
    // Primal tangents (zero unless so): x', w', r', b' and the forward recursion's a', c', h'.
    const T *tx = nullptr, *tw = nullptr, *tr = nullptr;
    std::vector<T> ta, tcs, ths;
    if (tangent && so) {
      const T* tb = c.in.size() == 4 && c.tin[3].data ? c.tin[3].data + j * c.in[3].size() + off_b : nullptr;
      tx = c.tin[0].data ? c.tin[0].data + j * c.in[0].size() : nullptr;
      tw = c.tin[1].data ? c.tin[1].data + j * c.in[1].size() + off_w : nullptr;
      tr = c.tin[2].data ? c.tin[2].data + j * c.in[2].size() + off_r : nullptr;
      ta.resize(per * G), tcs.resize(per * H), ths.resize(per * H);
      run_tangent(d, dir, x, w, r, acts, cs, hs, tx, tw, tr, tb, ta.data(), tcs.data(), ths.data());
    }
    const bool sec = !ta.empty();
    const std::int64_t BH = B * H;
    // Primal carries dhn = dz_{t+1} R, dcn = dc_{t+1} f_{t+1}; their tangents (with tgy).
    std::vector<T> dhn(BH, T(0)), dcn(BH, T(0)), dz(B * G), tdhn(BH, T(0)), tdcn(BH, T(0)), tdz(B * G);
    for (std::int64_t s = d.T - 1; s >= 0; --s) {
      const std::int64_t t = time(d, dir, s), tp = s > 0 ? time(d, dir, s - 1) : -1;
      for (std::int64_t n = 0; n < B; ++n) {
        const T* a = acts + (t * B + n) * G;
        const T* cn = cs + (t * B + n) * H;
        const T* cp = tp >= 0 ? cs + (tp * B + n) * H : nullptr;
        const T* g_y = gy + ((t * d.D + dir) * B + n) * H;
        T* z = dz.data() + n * G;
        const T* at = sec ? ta.data() + (t * B + n) * G : nullptr;
        const T* tcn = sec ? tcs.data() + (t * B + n) * H : nullptr;
        const T* tcp = sec && tp >= 0 ? tcs.data() + (tp * B + n) * H : nullptr;
        const T* tg_y = tangent ? tgy + ((t * d.D + dir) * B + n) * H : nullptr;
        T* tz = tdz.data() + n * G;
        for (std::int64_t k = 0; k < H; ++k) {
          const T i = a[k], o = a[H + k], f = a[2 * H + k], g = a[3 * H + k];
          const T tc = std::tanh(cn[k]), cpk = cp ? cp[k] : T(0);
          const T dh = g_y[k] + dhn[n * H + k];
          const T dc = dh * o * (T(1) - tc * tc) + dcn[n * H + k];
          z[k] = dc * g * i * (T(1) - i);
          z[H + k] = dh * tc * o * (T(1) - o);
          z[2 * H + k] = dc * cpk * f * (T(1) - f);
          z[3 * H + k] = dc * i * (T(1) - g * g);
          const T dcn_new = dc * f;
          if (tangent) {
            const T ti = sec ? at[k] : T(0), to = sec ? at[H + k] : T(0), tf = sec ? at[2 * H + k] : T(0),
                    tg = sec ? at[3 * H + k] : T(0);
            const T ttc = sec ? (T(1) - tc * tc) * tcn[k] : T(0), tcpk = tcp ? tcp[k] : T(0);
            const T tdh = tg_y[k] + tdhn[n * H + k];
            const T tdc =
                tdh * o * (T(1) - tc * tc) + dh * to * (T(1) - tc * tc) - T(2) * dh * o * tc * ttc + tdcn[n * H + k];
            tz[k] = tdc * g * i * (T(1) - i) + dc * tg * i * (T(1) - i) + dc * g * ti * (T(1) - T(2) * i);
            tz[H + k] = tdh * tc * o * (T(1) - o) + dh * ttc * o * (T(1) - o) + dh * tc * to * (T(1) - T(2) * o);
            tz[2 * H + k] = tdc * cpk * f * (T(1) - f) + dc * tcpk * f * (T(1) - f) + dc * cpk * tf * (T(1) - T(2) * f);
            tz[3 * H + k] = tdc * i * (T(1) - g * g) + dc * ti * (T(1) - g * g) - T(2) * dc * i * g * tg;
            tdcn[n * H + k] = tdc * f + dc * tf;
          }
          dcn[n * H + k] = dcn_new;
        }
      }
      const T* xt = x + t * B * I;
      const T* hp = tp >= 0 ? hs + tp * BH : nullptr;
      if (!tangent) {
        accumulate(B, G, I, H, dz.data(), xt, hp, w, gx ? gx + t * B * I : nullptr, gw, gr, gb);
        gemm(false, false, dz.data(), B, G, r, G, H, dhn.data(), T(1), false);
        continue;
      }
      // Tangent of g_X_t = dz W, g_W += dz^T X_t, g_R += dz^T h, g_b += sum dz, dhn = dz R.
      accumulate(B, G, I, H, tdz.data(), xt, hp, w, gx ? gx + t * B * I : nullptr, gw, gr, gb);
      gemm(false, false, tdz.data(), B, G, r, G, H, tdhn.data(), T(1), false);
      if (sec) {
        if (gx && tw) gemm(false, false, dz.data(), B, G, tw, G, I, gx + t * B * I, T(1), true);
        if (gw && tx) gemm(true, false, dz.data(), B, G, tx + t * B * I, B, I, gw, T(1), true);
        if (gr && tp >= 0) gemm(true, false, dz.data(), B, G, ths.data() + tp * BH, B, H, gr, T(1), true);
        if (tr) gemm(false, false, dz.data(), B, G, tr, G, H, tdhn.data(), T(1), true);
      }
      gemm(false, false, dz.data(), B, G, r, G, H, dhn.data(), T(1), false);
    }
  }

  // gx_t += dz W, gw += dz^T x_t, gr += dz^T h_prev (if any), gb[0:G] and gb[G:2G] += sum_n dz.
  template <class T>
  static void accumulate(std::int64_t B, std::int64_t G, std::int64_t I, std::int64_t H, const T* dz, const T* xt,
                         const T* hp, const T* w, T* gx, T* gw, T* gr, T* gb) {
    if (gx) gemm(false, false, dz, B, G, w, G, I, gx, T(1), true);
    if (gw) gemm(true, false, dz, B, G, xt, B, I, gw, T(1), true);
    if (gr && hp) gemm(true, false, dz, B, G, hp, B, H, gr, T(1), true);
    if (gb)
      for (std::int64_t n = 0; n < B; ++n)
        for (std::int64_t k = 0; k < G; ++k) {
          gb[k] += dz[n * G + k];
          gb[G + k] += dz[n * G + k];
        }
  }

  std::int64_t m_hidden;
  std::string m_direction;
};

}  // namespace

OpPtr make_lstm(std::int64_t hidden_size, const std::string& direction) {
  return std::make_shared<LstmOp>(hidden_size, direction);
}

}  // namespace curv
