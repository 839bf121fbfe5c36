#pragma once
// A choice of GEMM algorithm per shape. By default from a shipped table: the owner names a
// folder of tuning files (share/gemm_tuning), and the one whose header is this setup's (GPU,
// cuBLASLt, see below) gives the algorithm of each shape it holds; other shapes, and every shape
// when no file matches, run cublasGemmEx's default. Nothing is timed, so every process on such
// a GPU runs the same algorithms (a resume stays bit-identical). AUTOTP_GEMM_TUNE=0: the
// default algorithm everywhere.
//
// Tuning (AUTOTP_GEMM_TUNE=1), which also makes the tables: at a shape's first call,
// cublasGemmEx's default algorithm and cuBLASLt's heuristic candidates are timed on the call's
// own operands, and the fastest is kept for every later call of that shape (the default unless
// a candidate beats it by more than 1%). On the step's shapes this saves ~3.5% of GEMM time
// (tests/gpu/gemm_sweep.cu); Lt's first candidate alone is slower than the default, hence the
// timing. AUTOTP_GEMM_TUNE=lt always takes the fastest Lt candidate (for tests);
// AUTOTP_GEMM_TUNE_VERBOSE=1 prints each shape's timings and choice to stderr.
//
// Not the default: the choice depends on timings, so two processes (a run and its resume, or
// two ranks) may pick different algorithms for one shape and differ in the last bits of a
// result. Within one process a shape always runs the same algorithm, and split-K algorithms
// (whose reductions may be non-deterministic) are never candidates. A table is a tuning file
// (below) copied into share/gemm_tuning: tests/gpu/run_bench.sh's autotp-tuned run writes one.
//
// AUTOTP_GEMM_TUNE_FILE=path (with AUTOTP_GEMM_TUNE set; like PyTorch's TunableOp results file)
// makes the choices reproducible: processes reading the same file run the same algorithms, so a
// resume is bit-identical to the run it continues. The file is read at the first tuned GEMM; a
// shape it holds is used without timing (a cuBLASLt choice is checked once with
// cublasLtMatmulAlgoCheck, and retuned with a warning if it no longer runs). Each newly tuned
// shape rewrites the file with every choice known. Its text:
//   autotp-gemm-tune <format version> cublasLt <cublasLtGetVersion()> mode <1|lt> sm_<cc> <GPU>
//   M N K transA transB accumulate c16 align_a align_b align_c default
//   M N K transA transB accumulate c16 align_a align_b align_c lt <8 x 16 hex digits>
// one choice a line, the hex digits being cublasLtMatmulAlgo_t's data[8]. A file whose header
// differs (tuned with another cuBLASLt, GPU or mode) is ignored with a warning and rewritten; a
// malformed line is an error (delete the file to retune). The file is written whole to
// path.tmp.<pid> and renamed over path, so a reader never sees half a file. Ranks sharing the
// path each rewrite it and the last writer wins: ranks agree only when they read the same
// complete file, so tune once with one process first (e.g. the benchmark), then run the job.
//
// Only CUDA and cuBLAS headers besides the standard library: tests/gpu/gemm_sweep.cu, a tool
// not linked to the backend, includes this for describe_algo().
#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <map>
#include <string>
#include <tuple>
#include <vector>

namespace autotp::cuda {

// One line naming a cuBLASLt algorithm's configuration (for logs and the sweep's table).
inline std::string describe_algo(const cublasLtMatmulAlgo_t& algo) {
  int id = 0, tile = 0, stages = 0, splitk = 0, swizzle = 0, red = 0, cluster = 0;
  size_t w = 0;
  cublasLtMatmulAlgoConfigGetAttribute(&algo, CUBLASLT_ALGO_CONFIG_ID, &id, sizeof id, &w);
  cublasLtMatmulAlgoConfigGetAttribute(&algo, CUBLASLT_ALGO_CONFIG_TILE_ID, &tile, sizeof tile, &w);
  cublasLtMatmulAlgoConfigGetAttribute(&algo, CUBLASLT_ALGO_CONFIG_STAGES_ID, &stages,
                                       sizeof stages, &w);
  cublasLtMatmulAlgoConfigGetAttribute(&algo, CUBLASLT_ALGO_CONFIG_SPLITK_NUM, &splitk,
                                       sizeof splitk, &w);
  cublasLtMatmulAlgoConfigGetAttribute(&algo, CUBLASLT_ALGO_CONFIG_CTA_SWIZZLING, &swizzle,
                                       sizeof swizzle, &w);
  cublasLtMatmulAlgoConfigGetAttribute(&algo, CUBLASLT_ALGO_CONFIG_REDUCTION_SCHEME, &red,
                                       sizeof red, &w);
  cublasLtMatmulAlgoConfigGetAttribute(&algo, CUBLASLT_ALGO_CONFIG_CLUSTER_SHAPE_ID, &cluster,
                                       sizeof cluster, &w);
  char buf[160];
  std::snprintf(buf, sizeof buf, "algo %d tile %d stages %d splitk %d swizzle %d red %d cluster %d",
                id, tile, stages, splitk, swizzle, red, cluster);
  return buf;
}

// One call's arguments (gemm_tuner.cu).
struct GemmCall;

class GemmTuner {
 public:
  // Device memory comes from the owner's tracked allocator (its peak-memory accounting sees the
  // workspace and the zero buffer). The owner frees what is left at its end: the tuner's
  // destructor releases only cuBLASLt objects and events, never memory.
  using Alloc = std::function<void*(size_t)>;
  using Free = std::function<void(void*)>;
  // Reads AUTOTP_GEMM_TUNE, AUTOTP_GEMM_TUNE_VERBOSE and AUTOTP_GEMM_TUNE_FILE; allocates and
  // reads nothing until a tuned call (the owner selects its device after constructing this).
  // tables: the folder of shipped tuning files (empty: none).
  GemmTuner(Alloc alloc, Free free, const std::string& tables = "");
  ~GemmTuner();
  GemmTuner(const GemmTuner&) = delete;
  GemmTuner& operator=(const GemmTuner&) = delete;

  // Row-major c[M,N] (+)= op(a) op(b) on bf16 operands, c fp32 or (c_type CUDA_R_16BF, not
  // accumulating) bf16: CudaBackendImpl::gemm's contract. Tuning off: cublasGemmEx with its
  // default algorithm; on: the algorithm chosen for the shape, tuned first when the shape is
  // new. `cublas` must issue on `stream`.
  void run(cublasHandle_t cublas, cudaStream_t stream, int64_t M, int64_t N, int64_t K,
           const __nv_bfloat16* a, bool transA, const __nv_bfloat16* b, bool transB, void* c,
           cudaDataType_t c_type, bool accumulate);

 private:
  // AUTOTP_GEMM_TUNE: unset/other: Table (the matching shipped table, else Off); "0": Off;
  // "1": On; "lt": On, but an Lt candidate that runs is chosen even when slower than the
  // default (so that tests exercise the cuBLASLt path).
  enum class Mode { Off, Table, On, LtOnly };

  // The cuBLASLt description of one GEMM (owned; movable so that a Plan can live in the map).
  struct LtProblem {
    cublasLtMatmulDesc_t op = nullptr;
    cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
    LtProblem() = default;
    explicit LtProblem(const GemmCall& g);
    LtProblem(LtProblem&& o) noexcept;
    LtProblem& operator=(LtProblem&& o) noexcept;
    LtProblem(const LtProblem&) = delete;
    LtProblem& operator=(const LtProblem&) = delete;
    ~LtProblem();
  };
  // A shape's choice, what the file keeps: cublasGemmEx with CUBLAS_GEMM_DEFAULT, or `algo`.
  struct Choice {
    bool lt = false;
    cublasLtMatmulAlgo_t algo{};
  };
  // A choice with the cuBLASLt description it runs on (when lt).
  struct Plan : Choice {
    LtProblem problem;
  };
  // What a choice depends on: M, N, K, transA, transB, accumulate, bf16 C, and the alignments
  // of a, b and c (an algorithm chosen for aligned pointers may not run on less aligned ones).
  using Key =
      std::tuple<int64_t, int64_t, int64_t, bool, bool, bool, bool, unsigned, unsigned, unsigned>;
  static Key key_of(const GemmCall& g);

  Plan plan(cublasHandle_t cublas, cudaStream_t stream, const GemmCall& g, const Key& key);
  bool runs(const LtProblem& p, const cublasLtMatmulAlgo_t& algo) const;
  void load();
  void load_table();
  bool read_choices(const std::string& path, std::string* found = nullptr);
  void save();
  static std::string format(const Key& key, const Choice& c);
  static bool parse(const std::string& line, Key* key, Choice* c);

  void start();
  const __nv_bfloat16* zeros(size_t n, cudaStream_t stream);
  Plan tune(cublasHandle_t cublas, cudaStream_t stream, const GemmCall& g);
  std::vector<cublasLtMatmulAlgo_t> candidates(const LtProblem& p, const GemmCall& g) const;
  float time_ms(cudaStream_t stream, const std::function<cublasStatus_t()>& launch);
  cublasStatus_t lt_matmul(const LtProblem& p, const cublasLtMatmulAlgo_t& algo,
                           cudaStream_t stream, const GemmCall& g) const;
  cublasStatus_t launch(const Plan& p, cublasHandle_t cublas, cudaStream_t stream,
                        const GemmCall& g) const;

  Alloc alloc_;
  Free free_;
  Mode mode_ = Mode::Off;
  bool verbose_ = false;
  cublasLtHandle_t lt_ = nullptr;
  void* workspace_ = nullptr;
  __nv_bfloat16* zeros_ = nullptr;
  size_t zeros_n_ = 0;
  cudaEvent_t begin_ = nullptr, end_ = nullptr;
  std::map<Key, Plan> plans_;
  // AUTOTP_GEMM_TUNE_FILE (empty: none), or in Table mode the matching table; the header of
  // this setup and the choices, set by load().
  std::string tables_, file_, header_;
  bool loaded_ = false, save_warned_ = false;
  std::map<Key, Choice> known_;
};

}  // namespace autotp::cuda
