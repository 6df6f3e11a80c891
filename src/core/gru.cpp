// GRU (ONNX, layout 0, gate order z, r, h, linear_before_reset = 1 as PyTorch exports nn.GRU;
// zero initial state), forward, reverse or both directions. X: [T, B, I], W: [D, 3H, I],
// R: [D, 3H, H], Bias: [D, 6H] (Wb then Rb; optional); Y: [T, D, B, H]. Per step, h the previous state:
//   a = X_t W^T + Wb,  u = h R^T + Rb                                  (both [B, 3H])
//   z = s(a_z + u_z),  r = s(a_r + u_r),  n = tanh(a_h + r u_h),  h_t = (1 - z) n + z h
// Backward through time (dh flows from step t + 1 to t):
//   dh = g_Y_t + dh_{t+1},  dn = dh (1 - z) (1 - n^2),  dzp = dh (h - n) z(1-z),  drp = dn u_h r(1-r)
//   da = [dzp, drp, dn],  du = [dzp, drp, dn r]
//   g_X_t = da W,  g_W += da^T X_t,  g_Wb += sum_b da,  g_R += du^T h,  g_Rb += sum_b du
//   dh_t (carried to step t - 1) = dh z + du R
// The JVP runs the tangent of the forward recursion, the VJP tangent the tangent of the backward
// recursion beside it (product rule on every line; the primal tangents are the second-order part).
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

class GruOp final : public OpImpl<GruOp> {
 public:
  GruOp(std::int64_t hidden, std::string direction) : m_hidden(hidden), m_direction(std::move(direction)) {
    internal::check_rnn_attrs(type(), m_hidden, m_direction);
  }
  std::string type() const override { return "GRU"; }
  OpSpec spec() const override { return OpSpec(type()).set_int("hidden_size", m_hidden).set("direction", m_direction); }
  int arity() const override { return -1; }
  bool tangent_reads_output_grad() const override { return true; }
  std::int64_t dirs() const { return m_direction == "bidirectional" ? 2 : 1; }

  Shape output_shape(const std::vector<Shape>& in) const override {
    return internal::rnn_output_shape(type(), in, dirs(), m_hidden, 3, 4);  // saves 4H per sample and step
  }

  struct Dims {
    std::int64_t T, B, I, H, G, D;
  };
  template <class T>
  Dims dims(const OpCtx<T>& c) const {
    return {c.in[0].dim(0), c.in[0].dim(1), c.in[0].dim(2), m_hidden, 3 * m_hidden, dirs()};
  }
  std::int64_t time(const Dims& d, std::int64_t dir, std::int64_t s) const {
    const bool rev = m_direction == "reverse" || dir == 1;
    return rev ? d.T - 1 - s : s;
  }

  // One direction's weights and the saved values of its forward pass (by time index):
  // acts [T, B, 4H] = (z, r, n, u_h), hs [T, B, H].
  template <class T>
  struct Dir {
    const T *w, *r, *b;  // b may be null
    T *acts, *hs;
  };

  // Forward recursion, or its tangent when t* are given (then `out` receives acts' and hs' in the
  // same layout, and p the primal values).
  template <class T>
  void run(const Dims& d, std::int64_t dir, const T* x, const Dir<T>& p, const T* tx, const T* tw, const T* tr,
           const T* tb, T* tacts, T* ths, bool tangent) const {
    const std::int64_t B = d.B, H = d.H, G = d.G;
    std::vector<T> a(B * G), u(B * G);
    for (std::int64_t s = 0; s < d.T; ++s) {
      const std::int64_t t = time(d, dir, s), tp = s > 0 ? time(d, dir, s - 1) : -1;
      const T* xt = x + t * B * d.I;
      std::fill(a.begin(), a.end(), T(0));
      std::fill(u.begin(), u.end(), T(0));
      if (!tangent) {
        gemm(false, true, xt, B, d.I, p.w, G, d.I, a.data(), T(1), false);
        if (tp >= 0) gemm(false, true, p.hs + tp * B * H, B, H, p.r, G, H, u.data(), T(1), false);
      } else {
        if (tx) gemm(false, true, tx + t * B * d.I, B, d.I, p.w, G, d.I, a.data(), T(1), true);
        if (tw) gemm(false, true, xt, B, d.I, tw, G, d.I, a.data(), T(1), true);
        if (tp >= 0) {
          gemm(false, true, ths + tp * B * H, B, H, p.r, G, H, u.data(), T(1), true);
          if (tr) gemm(false, true, p.hs + tp * B * H, B, H, tr, G, H, u.data(), T(1), true);
        }
      }
      const T* bias = tangent ? tb : p.b;
      for (std::int64_t n = 0; n < B; ++n) {
        T* an = a.data() + n * G;
        T* un = u.data() + n * G;
        if (bias)
          for (std::int64_t k = 0; k < G; ++k) an[k] += bias[k], un[k] += bias[G + k];
        const T* sv = p.acts + (t * B + n) * 4 * H;  // primal z, r, n, u_h
        const T* hp = tp >= 0 ? p.hs + (tp * B + n) * H : nullptr;
        T* o = (tangent ? tacts : p.acts) + (t * B + n) * 4 * H;
        T* h = (tangent ? ths : p.hs) + (t * B + n) * H;
        const T* thp = tangent && tp >= 0 ? ths + (tp * B + n) * H : nullptr;
        for (std::int64_t k = 0; k < H; ++k) {
          if (!tangent) {
            const T z = sig(an[k] + un[k]), r = sig(an[H + k] + un[H + k]);
            const T nn = std::tanh(an[2 * H + k] + r * un[2 * H + k]);
            o[k] = z, o[H + k] = r, o[2 * H + k] = nn, o[3 * H + k] = un[2 * H + k];
            h[k] = (T(1) - z) * nn + z * (hp ? hp[k] : T(0));
          } else {
            const T z = sv[k], r = sv[H + k], nn = sv[2 * H + k], uh = sv[3 * H + k];
            const T tz = z * (T(1) - z) * (an[k] + un[k]), trr = r * (T(1) - r) * (an[H + k] + un[H + k]);
            const T tn = (T(1) - nn * nn) * (an[2 * H + k] + trr * uh + r * un[2 * H + k]);
            o[k] = tz, o[H + k] = trr, o[2 * H + k] = tn, o[3 * H + k] = un[2 * H + k];
            h[k] = -tz * nn + (T(1) - z) * tn + tz * (hp ? hp[k] : T(0)) + z * (thp ? thp[k] : T(0));
          }
        }
      }
    }
  }

  template <class T>
  Dir<T> dir_of(OpCtx<T>& c, const Dims& d, std::int64_t dir) const {
    auto& st = c.state->saved;
    const std::int64_t per = d.T * d.B;
    return {c.in[1].data + dir * d.G * d.I, c.in[2].data + dir * d.G * d.H,
            c.in.size() == 4 ? c.in[3].data + dir * 2 * d.G : nullptr, st[0].data() + dir * per * 4 * d.H,
            st[1].data() + dir * per * d.H};
  }
  template <class T>
  static void scatter_y(const Dims& d, std::int64_t dir, const T* hs, T* y) {
    const std::int64_t BH = d.B * d.H;
    for (std::int64_t t = 0; t < d.T; ++t) std::copy(hs + t * BH, hs + (t + 1) * BH, y + (t * d.D + dir) * BH);
  }

  template <class T>
  void fwd(OpCtx<T>& c, View<T> out) const {
    const Dims d = dims(c);
    auto& st = c.state->saved;
    st.resize(2);
    st[0].resize({d.D, d.T, d.B, 4 * d.H});
    st[1].resize({d.D, d.T, d.B, d.H});
    for (std::int64_t dir = 0; dir < d.D; ++dir) {
      const Dir<T> p = dir_of(c, d, dir);
      run<T>(d, dir, c.in[0].data, p, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, false);
      scatter_y(d, dir, p.hs, out.data);
    }
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
    const std::int64_t ny = d.T * d.D * d.B * d.H, per = d.T * d.B;
    std::vector<T> ta(per * 4 * d.H), ths(per * d.H);
    for (std::int64_t j = 0; j < c.k; ++j)
      for (std::int64_t dir = 0; dir < d.D; ++dir) {
        tangent_dir(c, d, dir, j, ta.data(), ths.data());
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
  // The forward tangent of one direction for tangent direction j: ta (z', r', n', u_h'), ths (h').
  template <class T>
  void tangent_dir(OpCtx<T>& c, const Dims& d, std::int64_t dir, std::int64_t j, T* ta, T* ths) const {
    const Dir<T> p = dir_of(c, d, dir);
    const T* tb = c.in.size() == 4 && c.tin[3].data ? c.tin[3].data + j * c.in[3].size() + dir * 2 * d.G : nullptr;
    run<T>(d, dir, c.in[0].data, p, c.tin[0].data ? c.tin[0].data + j * c.in[0].size() : nullptr,
           c.tin[1].data ? c.tin[1].data + j * c.in[1].size() + dir * d.G * d.I : nullptr,
           c.tin[2].data ? c.tin[2].data + j * c.in[2].size() + dir * d.G * d.H : nullptr, tb, ta, ths, true);
  }

  // Backward through time of one direction, adding into gx, gw, gr, gb (null: not wanted); with
  // tgy, the VJP tangent (second-order terms from c.tin direction j when `so`).
  template <class T>
  void backward_dir(OpCtx<T>& c, const Dims& d, std::int64_t dir, const T* gy, const T* tgy, T* gx, T* gw, T* gr, T* gb,
                    bool so, std::int64_t j) const {
    const std::int64_t B = d.B, H = d.H, G = d.G, I = d.I, per = d.T * B, BH = B * H;
    const Dir<T> p = dir_of(c, d, dir);
    const T* x = c.in[0].data;
    if (gw) gw += dir * G * I;
    if (gr) gr += dir * G * H;
    if (gb) gb += dir * 2 * G;
    const bool tangent = tgy != nullptr;
    const T *tx = nullptr, *tw = nullptr, *tr = nullptr;
    std::vector<T> ta, ths;
    if (tangent && so) {
      ta.resize(per * 4 * H), ths.resize(per * H);
      tangent_dir(c, d, dir, j, ta.data(), ths.data());
      tx = c.tin[0].data ? c.tin[0].data + j * c.in[0].size() : nullptr;
      tw = c.tin[1].data ? c.tin[1].data + j * c.in[1].size() + dir * G * I : nullptr;
      tr = c.tin[2].data ? c.tin[2].data + j * c.in[2].size() + dir * G * H : nullptr;
    }
    const bool sec = !ta.empty();
    std::vector<T> dhn(BH, T(0)), da(B * G), du(B * G), tdhn(BH, T(0)), tda(B * G), tdu(B * G);
    for (std::int64_t s = d.T - 1; s >= 0; --s) {
      const std::int64_t t = time(d, dir, s), tp = s > 0 ? time(d, dir, s - 1) : -1;
      std::vector<T> dh(BH), tdh(tangent ? BH : 0);
      for (std::int64_t n = 0; n < B; ++n) {
        const T* sv = p.acts + (t * B + n) * 4 * H;
        const T* hp = tp >= 0 ? p.hs + (tp * B + n) * H : nullptr;
        const T* g_y = gy + ((t * d.D + dir) * B + n) * H;
        const T* at = sec ? ta.data() + (t * B + n) * 4 * H : nullptr;
        const T* thp = sec && tp >= 0 ? ths.data() + (tp * B + n) * H : nullptr;
        const T* tg_y = tangent ? tgy + ((t * d.D + dir) * B + n) * H : nullptr;
        for (std::int64_t k = 0; k < H; ++k) {
          const T z = sv[k], r = sv[H + k], nn = sv[2 * H + k], uh = sv[3 * H + k], hpk = hp ? hp[k] : T(0);
          const std::int64_t e = n * H + k, q = n * G + k;
          const T g = g_y[k] + dhn[e];
          const T dn = g * (T(1) - z) * (T(1) - nn * nn);
          const T dzp = g * (hpk - nn) * z * (T(1) - z);
          const T drp = dn * uh * r * (T(1) - r);
          da[q] = dzp, da[q + H] = drp, da[q + 2 * H] = dn;
          du[q] = dzp, du[q + H] = drp, du[q + 2 * H] = dn * r;
          dh[e] = g * z;
          if (tangent) {
            const T tz = sec ? at[k] : T(0), trr = sec ? at[H + k] : T(0), tnn = sec ? at[2 * H + k] : T(0),
                    tuh = sec ? at[3 * H + k] : T(0), thpk = thp ? thp[k] : T(0);
            const T tg = tg_y[k] + tdhn[e];
            const T dn0 = g * (T(1) - z), tdn0 = tg * (T(1) - z) - g * tz;
            const T tdn = tdn0 * (T(1) - nn * nn) - T(2) * dn0 * nn * tnn;
            const T dz0 = g * (hpk - nn), tdz0 = tg * (hpk - nn) + g * (thpk - tnn);
            const T tdzp = tdz0 * z * (T(1) - z) + dz0 * tz * (T(1) - T(2) * z);
            const T dr0 = dn * uh, tdr0 = tdn * uh + dn * tuh;
            const T tdrp = tdr0 * r * (T(1) - r) + dr0 * trr * (T(1) - T(2) * r);
            tda[q] = tdzp, tda[q + H] = tdrp, tda[q + 2 * H] = tdn;
            tdu[q] = tdzp, tdu[q + H] = tdrp, tdu[q + 2 * H] = tdn * r + dn * trr;
            tdh[e] = tg * z + g * tz;
          }
        }
      }
      const T* xt = x + t * B * I;
      const T* hp = tp >= 0 ? p.hs + tp * BH : nullptr;
      if (!tangent) {
        accumulate(d, da.data(), du.data(), xt, hp, p.w, gx ? gx + t * B * I : nullptr, gw, gr, gb);
        gemm(false, false, du.data(), B, G, p.r, G, H, dh.data(), T(1), true);
        dhn = dh;
        continue;
      }
      accumulate(d, tda.data(), tdu.data(), xt, hp, p.w, gx ? gx + t * B * I : nullptr, gw, gr, gb);
      gemm(false, false, tdu.data(), B, G, p.r, G, H, tdh.data(), T(1), true);
      if (sec) {
        if (gx && tw) gemm(false, false, da.data(), B, G, tw, G, I, gx + t * B * I, T(1), true);
        if (gw && tx) gemm(true, false, da.data(), B, G, tx + t * B * I, B, I, gw, T(1), true);
        if (gr && tp >= 0) gemm(true, false, du.data(), B, G, ths.data() + tp * BH, B, H, gr, T(1), true);
        if (tr) gemm(false, false, du.data(), B, G, tr, G, H, tdh.data(), T(1), true);
      }
      gemm(false, false, du.data(), B, G, p.r, G, H, dh.data(), T(1), true);
      dhn = dh;
      tdhn = tdh;
    }
  }

  // gx_t += da W, gw += da^T x_t, gr += du^T h_prev (if any), gb[0:G] += sum da, gb[G:2G] += sum du.
  template <class T>
  static void accumulate(const Dims& d, const T* da, const T* du, const T* xt, const T* hp, const T* w, T* gx, T* gw,
                         T* gr, T* gb) {
    const std::int64_t B = d.B, G = d.G;
    if (gx) gemm(false, false, da, B, G, w, G, d.I, gx, T(1), true);
    if (gw) gemm(true, false, da, B, G, xt, B, d.I, gw, T(1), true);
    if (gr && hp) gemm(true, false, du, B, G, hp, B, d.H, gr, T(1), true);
    if (gb)
      for (std::int64_t n = 0; n < B; ++n)
        for (std::int64_t k = 0; k < G; ++k) {
          gb[k] += da[n * G + k];
          gb[G + k] += du[n * G + k];
        }
  }

  std::int64_t m_hidden;
  std::string m_direction;
};

}  // namespace

OpPtr make_gru(std::int64_t hidden_size, const std::string& direction) {
  return std::make_shared<GruOp>(hidden_size, direction);
}

}  // namespace curv
