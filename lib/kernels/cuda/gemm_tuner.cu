// GemmTuner (gemm_tuner.cuh): per GEMM shape, cublasGemmEx's default or the fastest cuBLASLt
// heuristic candidate, chosen by timing at the shape's first call.
#include "kernels/cuda/gemm_tuner.cuh"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <type_traits>
#include <utility>

#include "kernels/cuda/cuda_impl.cuh"

namespace autotp::cuda {

// Row-major C[M,N] (+)= op(A) op(B) is column-major C^T[N,M] = op(B)^T op(A)^T, and a row-major
// matrix read column-major is its transpose: so cuBLAS gets (B, A) with the same trans flags and
// the row strides as leading dimensions.
struct GemmCall {
  int64_t M, N, K;
  const __nv_bfloat16* a;
  bool transA;
  const __nv_bfloat16* b;
  bool transB;
  void* c;
  bool c16, accumulate;

  int lda() const { return int(transA ? M : K); }
  int ldb() const { return int(transB ? K : N); }
  cublasOperation_t op_a() const { return transA ? CUBLAS_OP_T : CUBLAS_OP_N; }
  cublasOperation_t op_b() const { return transB ? CUBLAS_OP_T : CUBLAS_OP_N; }
  cudaDataType_t c_type() const { return c16 ? CUDA_R_16BF : CUDA_R_32F; }
  float beta() const { return accumulate ? 1.0f : 0.0f; }
};

namespace {

constexpr size_t kWorkspaceBytes = size_t(32) << 20;
constexpr int kHeuristicResults = 16;
constexpr int kTimedRuns = 3;
// A candidate replaces the default only when this much faster: a near tie is timing noise, not
// worth leaving the algorithm every other path of the backend uses.
constexpr float kMinGain = 0.01f;
// AUTOTP_GEMM_TUNE_FILE's format: raise it when a line's meaning changes (the key's fields, the
// workspace or candidate rules), so that old files are retuned rather than misread.
constexpr int kFileVersion = 1;

const char* env_or_empty(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

// The largest power of two dividing p's address, capped at 256 (what cuBLASLt assumes unless
// told less): parameter shadows and narrow outputs sit at any element offset.
unsigned alignment(const void* p) {
  const auto u = reinterpret_cast<uintptr_t>(p);
  return u ? unsigned(std::min<uintptr_t>(u & (~u + 1), 256)) : 256u;
}

cublasStatus_t gemm_ex(cublasHandle_t cublas, const GemmCall& g) {
  const float alpha = 1.0f, beta = g.beta();
  return cublasGemmEx(cublas, g.op_b(), g.op_a(), int(g.N), int(g.M), int(g.K), &alpha, g.b,
                      CUDA_R_16BF, g.ldb(), g.a, CUDA_R_16BF, g.lda(), &beta, g.c, g.c_type(),
                      int(g.N), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
}

template <typename T>
int config(const cublasLtMatmulAlgo_t& algo, cublasLtMatmulAlgoConfigAttributes_t attr) {
  T v{};
  size_t written = 0;
  AUTOTP_CUBLAS(cublasLtMatmulAlgoConfigGetAttribute(&algo, attr, &v, sizeof v, &written));
  return int(v);
}

// Split-K sums K's parts in an order that may vary from run to run: never a candidate.
bool deterministic(const cublasLtMatmulAlgo_t& algo) {
  return config<int32_t>(algo, CUBLASLT_ALGO_CONFIG_SPLITK_NUM) <= 1 &&
         config<uint32_t>(algo, CUBLASLT_ALGO_CONFIG_REDUCTION_SCHEME) ==
             CUBLASLT_REDUCTION_SCHEME_NONE;
}

std::string shape(const GemmCall& g) {
  char buf[128];
  std::snprintf(buf, sizeof buf, "%ld x %ld x %ld%s%s%s%s", long(g.M), long(g.N), long(g.K),
                g.transA ? " At" : "", g.transB ? " Bt" : "", g.accumulate ? " +=" : "",
                g.c16 ? " bf16 C" : "");
  return buf;
}

void report(const GemmCall& g, int candidates, float default_ms, float chosen_ms,
            const std::string& chosen) {
  std::fprintf(stderr,
               "gemm tuner: %s: default %.3f ms, chosen %.3f ms (%s; %d cuBLASLt candidates)\n",
               shape(g).c_str(), default_ms, chosen_ms, chosen.c_str(), candidates);
}

}  // namespace

// ---------------------------------------------------------------- LtProblem

// Delegating to the default constructor makes the object complete before the first create:
// a failure below then destroys what was created.
GemmTuner::LtProblem::LtProblem(const GemmCall& g) : LtProblem() {
  const cublasOperation_t ta = g.op_b(), tb = g.op_a();
  AUTOTP_CUBLAS(cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  AUTOTP_CUBLAS(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
  AUTOTP_CUBLAS(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb));
  // Lt's A is our B and Lt's B our A, each as the column-major matrix its memory holds.
  AUTOTP_CUBLAS(cublasLtMatrixLayoutCreate(&a, CUDA_R_16BF, uint64_t(g.transB ? g.K : g.N),
                                           uint64_t(g.transB ? g.N : g.K), g.ldb()));
  AUTOTP_CUBLAS(cublasLtMatrixLayoutCreate(&b, CUDA_R_16BF, uint64_t(g.transA ? g.M : g.K),
                                           uint64_t(g.transA ? g.K : g.M), g.lda()));
  AUTOTP_CUBLAS(
      cublasLtMatrixLayoutCreate(&c, g.c_type(), uint64_t(g.N), uint64_t(g.M), int64_t(g.N)));
}

GemmTuner::LtProblem::LtProblem(LtProblem&& o) noexcept {
  *this = std::move(o);
}

GemmTuner::LtProblem& GemmTuner::LtProblem::operator=(LtProblem&& o) noexcept {
  std::swap(op, o.op);
  std::swap(a, o.a);
  std::swap(b, o.b);
  std::swap(c, o.c);
  return *this;
}

GemmTuner::LtProblem::~LtProblem() {
  if (c) cublasLtMatrixLayoutDestroy(c);
  if (b) cublasLtMatrixLayoutDestroy(b);
  if (a) cublasLtMatrixLayoutDestroy(a);
  if (op) cublasLtMatmulDescDestroy(op);
}

// ---------------------------------------------------------------- GemmTuner

GemmTuner::GemmTuner(Alloc alloc, Free free, const std::string& tables)
    : alloc_(std::move(alloc)), free_(std::move(free)), tables_(tables) {
  // Read once: a shape's plan must not change under a running process.
  const std::string mode = env_or_empty("AUTOTP_GEMM_TUNE");
  mode_ = mode == "1"                     ? Mode::On
          : mode == "lt"                  ? Mode::LtOnly
          : mode == "0" || tables.empty() ? Mode::Off
                                          : Mode::Table;
  verbose_ = std::string(env_or_empty("AUTOTP_GEMM_TUNE_VERBOSE")) == "1";
  if (mode_ == Mode::On || mode_ == Mode::LtOnly) file_ = env_or_empty("AUTOTP_GEMM_TUNE_FILE");
}

GemmTuner::~GemmTuner() {
  // Nothing here may throw; the owner frees the workspace and the zero buffer.
  plans_.clear();
  if (begin_) cudaEventDestroy(begin_);
  if (end_) cudaEventDestroy(end_);
  if (lt_) cublasLtDestroy(lt_);
}

void GemmTuner::run(cublasHandle_t cublas, cudaStream_t stream, int64_t M, int64_t N, int64_t K,
                    const __nv_bfloat16* a, bool transA, const __nv_bfloat16* b, bool transB,
                    void* c, cudaDataType_t c_type, bool accumulate) {
  check(c_type == CUDA_R_32F || (c_type == CUDA_R_16BF && !accumulate),
        "gemm tuner: C must be fp32, or bf16 when not accumulating");
  const GemmCall g{M, N, K, a, transA, b, transB, c, c_type == CUDA_R_16BF, accumulate};
  if (mode_ == Mode::Off) {
    AUTOTP_CUBLAS(gemm_ex(cublas, g));
    return;
  }
  const Key key = key_of(g);
  auto it = plans_.find(key);
  if (it == plans_.end()) it = plans_.emplace(key, plan(cublas, stream, g, key)).first;
  // The tuning runs left C as it was (accumulating) or for this run to overwrite.
  AUTOTP_CUBLAS(launch(it->second, cublas, stream, g));
}

GemmTuner::Key GemmTuner::key_of(const GemmCall& g) {
  return Key(g.M, g.N, g.K, g.transA, g.transB, g.accumulate, g.c16, alignment(g.a), alignment(g.b),
             alignment(g.c));
}

// A new shape's plan: the file's choice when it has one that runs here, else tuned (and saved).
GemmTuner::Plan GemmTuner::plan(cublasHandle_t cublas, cudaStream_t stream, const GemmCall& g,
                                const Key& key) {
  if (mode_ == Mode::Table && !loaded_) load_table();
  if (!file_.empty() && !loaded_) load();
  const auto known = known_.find(key);
  if (known != known_.end()) {
    Plan p;
    if (known->second.lt) {
      start();
      p.problem = LtProblem(g);
      p.algo = known->second.algo;
      p.lt = true;
    }
    if (!p.lt || runs(p.problem, p.algo)) {
      if (verbose_)
        std::fprintf(stderr, "gemm tuner: %s: %s from %s\n", shape(g).c_str(),
                     p.lt ? describe_algo(p.algo).c_str() : "cublasGemmEx default", file_.c_str());
      return p;
    }
    std::fprintf(stderr, "gemm tuner: %s: the cuBLASLt algorithm for %s does not run here; %s\n",
                 file_.c_str(), shape(g).c_str(),
                 mode_ == Mode::Table ? "using the default" : "retuning");
  }
  if (mode_ == Mode::Table) return Plan{};  // the default algorithm
  Plan p = tune(cublas, stream, g);
  known_[key] = p;  // the Choice part
  if (!file_.empty()) save();
  return p;
}

// Whether a saved algorithm still runs the problem within the workspace, deterministically (the
// file is text anyone may edit).
bool GemmTuner::runs(const LtProblem& p, const cublasLtMatmulAlgo_t& algo) const {
  cublasLtMatmulHeuristicResult_t r{};
  return cublasLtMatmulAlgoCheck(lt_, p.op, p.a, p.b, p.c, p.c, &algo, &r) ==
             CUBLAS_STATUS_SUCCESS &&
         r.workspaceSize <= kWorkspaceBytes && deterministic(algo);
}

// This setup's header: an algorithm is valid for one cuBLASLt and GPU; the mode decides what
// was chosen (a table is a file tuned in mode 1).
static std::string setup_header(bool lt_only) {
  int device = 0;
  AUTOTP_CUDA(cudaGetDevice(&device));
  cudaDeviceProp prop;
  AUTOTP_CUDA(cudaGetDeviceProperties(&prop, device));
  return "autotp-gemm-tune " + std::to_string(kFileVersion) + " cublasLt " +
         std::to_string(cublasLtGetVersion()) + " mode " + (lt_only ? "lt" : "1") + " sm_" +
         std::to_string(prop.major) + std::to_string(prop.minor) + " " + prop.name;
}

// The choices of the file at `path` into known_ when its header is header_; false when there
// is no such file or it was tuned elsewhere (*found, when given, receives the header read: empty
// for no file). A malformed line throws with loaded_ still false: every later call reports it
// again rather than overwriting the file.
bool GemmTuner::read_choices(const std::string& path, std::string* found) {
  std::ifstream in(path);
  std::string line;
  if (!in || !std::getline(in, line)) return false;
  if (found) *found = line;
  if (line != header_) return false;
  for (int n = 2; std::getline(in, line); ++n) {
    if (line.empty()) continue;
    Key key;
    Choice c;
    check(parse(line, &key, &c), "gemm tuner: ", path, ":", n, ": malformed line \"", line,
          "\"; delete the file to retune");
    known_[key] = c;
  }
  if (verbose_)
    std::fprintf(stderr, "gemm tuner: %zu choices from %s\n", known_.size(), path.c_str());
  return true;
}

// Reads the file's choices if its header is this setup's (no file yet: this process tunes and
// writes it). At the first tuned call rather than in the constructor: the owner selects its
// device after constructing the tuner.
void GemmTuner::load() {
  header_ = setup_header(mode_ == Mode::LtOnly);
  std::string found;
  if (!read_choices(file_, &found) && !found.empty())
    std::fprintf(stderr,
                 "gemm tuner: ignoring %s, tuned elsewhere (header \"%s\", here \"%s\"); it will "
                 "be rewritten\n",
                 file_.c_str(), found.c_str(), header_.c_str());
  loaded_ = true;
}

// Table mode: the first file of the folder (in name order) whose header is this setup's.
void GemmTuner::load_table() {
  header_ = setup_header(false);
  std::vector<std::string> paths;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(tables_, ec))
    if (e.is_regular_file()) paths.push_back(e.path().string());
  std::sort(paths.begin(), paths.end());
  for (const std::string& p : paths)
    if (read_choices(p)) {
      file_ = p;
      break;
    }
  loaded_ = true;
}

// Writes every known choice: the whole file to path.tmp.<pid>, then renamed over path, so that
// a reader sees the old file or the new one, never part of one. Ranks sharing the path each do
// this and the last rename wins (a rank's writes then hold what the file held when it read it,
// plus its own tunings); ranks run the same algorithms only when they read the same complete
// file, hence tune with one process before a job. Failing to write costs nothing but the
// persistence: a warning, once, and the choices still apply to this process.
void GemmTuner::save() {
  std::string text = header_ + "\n";
  for (const auto& [key, c] : known_) text += format(key, c) + "\n";
  const std::string tmp = file_ + ".tmp." + std::to_string(::getpid());
  std::FILE* f = std::fopen(tmp.c_str(), "w");
  bool ok = f && std::fwrite(text.data(), 1, text.size(), f) == text.size();
  if (f) ok = std::fclose(f) == 0 && ok;
  ok = ok && std::rename(tmp.c_str(), file_.c_str()) == 0;
  if (ok) return;
  const int err = errno;
  std::remove(tmp.c_str());
  if (!save_warned_)
    std::fprintf(stderr,
                 "gemm tuner: cannot write %s (%s); its choices apply to this process only\n",
                 file_.c_str(), std::strerror(err));
  save_warned_ = true;
}

// One line of the file (without its newline): the key's fields, then the choice.
std::string GemmTuner::format(const Key& key, const Choice& c) {
  const auto& [M, N, K, ta, tb, acc, c16, align_a, align_b, align_c] = key;
  char buf[128];
  std::snprintf(buf, sizeof buf, "%ld %ld %ld %d %d %d %d %u %u %u %s", long(M), long(N), long(K),
                int(ta), int(tb), int(acc), int(c16), align_a, align_b, align_c,
                c.lt ? "lt" : "default");
  std::string line = buf;
  if (c.lt)
    for (uint64_t w : c.algo.data) {
      std::snprintf(buf, sizeof buf, " %016llx", static_cast<unsigned long long>(w));
      line += buf;
    }
  return line;
}

// format()'s inverse; false when the line is not one it could have written.
bool GemmTuner::parse(const std::string& line, Key* key, Choice* c) {
  std::istringstream in(line);
  int64_t M, N, K;
  int ta, tb, acc, c16;
  unsigned align[3];
  std::string kind;
  if (!(in >> M >> N >> K >> ta >> tb >> acc >> c16 >> align[0] >> align[1] >> align[2] >> kind))
    return false;
  const auto flag = [](int v) { return v == 0 || v == 1; };
  const auto pow2 = [](unsigned v) { return v && v <= 256 && !(v & (v - 1)); };
  if (M <= 0 || N <= 0 || K <= 0 || !flag(ta) || !flag(tb) || !flag(acc) || !flag(c16) ||
      !pow2(align[0]) || !pow2(align[1]) || !pow2(align[2]) || (kind != "lt" && kind != "default"))
    return false;
  *key = Key(M, N, K, ta == 1, tb == 1, acc == 1, c16 == 1, align[0], align[1], align[2]);
  *c = Choice{};
  c->lt = kind == "lt";
  if (c->lt)
    for (uint64_t& w : c->algo.data)
      if (!(in >> std::hex >> w)) return false;
  return (in >> std::ws).eof();
}

void GemmTuner::start() {
  if (!begin_) AUTOTP_CUDA(cudaEventCreate(&begin_));
  if (!end_) AUTOTP_CUDA(cudaEventCreate(&end_));
  if (!lt_) AUTOTP_CUBLAS(cublasLtCreate(&lt_));
  if (!workspace_) workspace_ = alloc_(kWorkspaceBytes);
}

// Zeros for n bf16 values, set once and grown when a larger operand needs them.
const __nv_bfloat16* GemmTuner::zeros(size_t n, cudaStream_t stream) {
  if (zeros_n_ < n) {
    if (zeros_) free_(zeros_);
    zeros_ = nullptr;
    zeros_n_ = 0;
    zeros_ = static_cast<__nv_bfloat16*>(alloc_(n * sizeof(__nv_bfloat16)));
    AUTOTP_CUDA(cudaMemsetAsync(zeros_, 0, n * sizeof(__nv_bfloat16), stream));
    zeros_n_ = n;
  }
  return zeros_;
}

GemmTuner::Plan GemmTuner::tune(cublasHandle_t cublas, cudaStream_t stream, const GemmCall& real) {
  start();
  // An accumulating GEMM's C (a weight gradient) must survive the timing runs: they multiply
  // by zeros in place of the smaller operand, so each adds a zero (a -0 of C may become +0; an
  // Inf or NaN in the other operand makes NaN where the real product is non-finite anyway).
  GemmCall g = real;
  if (g.accumulate) {
    const size_t na = size_t(g.M * g.K), nb = size_t(g.K * g.N);
    if (na <= nb)
      g.a = zeros(na, stream);
    else
      g.b = zeros(nb, stream);
  }
  const float default_ms = time_ms(stream, [&] { return gemm_ex(cublas, g); });
  // The candidates are asked for with the real operands' alignments, the zeros being aligned.
  LtProblem problem(real);
  const std::vector<cublasLtMatmulAlgo_t> algos = candidates(problem, real);
  float best_ms = INFINITY;
  cublasLtMatmulAlgo_t best{};
  for (const cublasLtMatmulAlgo_t& algo : algos) {
    const float ms = time_ms(stream, [&] { return lt_matmul(problem, algo, stream, g); });
    if (ms < best_ms) best_ms = ms, best = algo;
  }
  Plan plan;
  plan.lt =
      std::isfinite(best_ms) && (mode_ == Mode::LtOnly || best_ms < (1.0f - kMinGain) * default_ms);
  if (plan.lt) {
    plan.problem = std::move(problem);
    plan.algo = best;
  }
  if (verbose_)
    report(real, int(algos.size()), default_ms, plan.lt ? best_ms : default_ms,
           plan.lt ? describe_algo(best) : std::string("cublasGemmEx default"));
  return plan;
}

// cuBLASLt's heuristic candidates for the problem that are deterministic, in its order.
std::vector<cublasLtMatmulAlgo_t> GemmTuner::candidates(const LtProblem& p,
                                                        const GemmCall& g) const {
  cublasLtMatmulPreference_t raw = nullptr;
  AUTOTP_CUBLAS(cublasLtMatmulPreferenceCreate(&raw));
  const std::unique_ptr<std::remove_pointer_t<cublasLtMatmulPreference_t>,
                        decltype(&cublasLtMatmulPreferenceDestroy)>
      pref(raw, &cublasLtMatmulPreferenceDestroy);
  const uint64_t ws = kWorkspaceBytes;
  // Lt's A is our b, its B our a; C and D are both c.
  const uint32_t align[4] = {alignment(g.b), alignment(g.a), alignment(g.c), alignment(g.c)};
  const cublasLtMatmulPreferenceAttributes_t align_attr[4] = {
      CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
      CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES};
  AUTOTP_CUBLAS(cublasLtMatmulPreferenceSetAttribute(
      pref.get(), CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws));
  for (int k = 0; k < 4; ++k)
    AUTOTP_CUBLAS(cublasLtMatmulPreferenceSetAttribute(pref.get(), align_attr[k], &align[k],
                                                       sizeof align[k]));
  cublasLtMatmulHeuristicResult_t res[kHeuristicResults] = {};
  int found = 0;
  const cublasStatus_t s = cublasLtMatmulAlgoGetHeuristic(lt_, p.op, p.a, p.b, p.c, p.c, pref.get(),
                                                          kHeuristicResults, res, &found);
  if (s == CUBLAS_STATUS_NOT_SUPPORTED) return {};  // no algorithm: the default it is
  AUTOTP_CUBLAS(s);
  std::vector<cublasLtMatmulAlgo_t> out;
  for (int k = 0; k < found; ++k)
    if (res[k].state == CUBLAS_STATUS_SUCCESS && deterministic(res[k].algo))
      out.push_back(res[k].algo);
  return out;
}

// Mean time of one launch: a warm-up, then kTimedRuns between events on `stream`. Infinite
// when the warm-up fails: a candidate that cannot run is none.
float GemmTuner::time_ms(cudaStream_t stream, const std::function<cublasStatus_t()>& launch) {
  if (launch() != CUBLAS_STATUS_SUCCESS) return INFINITY;
  AUTOTP_CUDA(cudaEventRecord(begin_, stream));
  for (int i = 0; i < kTimedRuns; ++i) AUTOTP_CUBLAS(launch());
  AUTOTP_CUDA(cudaEventRecord(end_, stream));
  AUTOTP_CUDA(cudaEventSynchronize(end_));
  float ms = 0;
  AUTOTP_CUDA(cudaEventElapsedTime(&ms, begin_, end_));
  return ms / float(kTimedRuns);
}

cublasStatus_t GemmTuner::lt_matmul(const LtProblem& p, const cublasLtMatmulAlgo_t& algo,
                                    cudaStream_t stream, const GemmCall& g) const {
  const float alpha = 1.0f, beta = g.beta();
  return cublasLtMatmul(lt_, p.op, &alpha, g.b, p.a, g.a, p.b, &beta, g.c, p.c, g.c, p.c, &algo,
                        workspace_, kWorkspaceBytes, stream);
}

cublasStatus_t GemmTuner::launch(const Plan& p, cublasHandle_t cublas, cudaStream_t stream,
                                 const GemmCall& g) const {
  return p.lt ? lt_matmul(p.problem, p.algo, stream, g) : gemm_ex(cublas, g);
}

}  // namespace autotp::cuda
