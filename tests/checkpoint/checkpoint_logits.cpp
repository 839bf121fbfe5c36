// checkpoint_logits MODEL.h5 IDS.bin OUT.bin: the logits autotp computes for one sequence, for
// export_check.py to compare with transformers. IDS.bin: int32 token ids (one sequence of T);
// OUT.bin: float32 logits [T, vocab_size], row-major. The whole model on one CPU rank.
#include <mpi.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <vector>

#include "core/error.hpp"
#include "io/file_util.hpp"
#include "io/model_file.hpp"
#include "kernels/cpu/cpu_backend.hpp"
#include "model/phi3_model.hpp"
#include "model_test_util.hpp"

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rc = 0;
  try {
    autotp::check(argc == 4, "usage: checkpoint_logits MODEL.h5 IDS.bin OUT.bin");
    autotp::ModelFileReader file(argv[1]);
    const std::string bytes = autotp::read_text_file(argv[2]);
    std::vector<int32_t> ids(bytes.size() / sizeof(int32_t));
    std::memcpy(ids.data(), bytes.data(), ids.size() * sizeof(int32_t));
    auto be = autotp::make_cpu_backend();
    auto comm = autotp::make_mpi_comm(MPI_COMM_SELF);
    const auto plan = autotp::test::replicated_plan(file.config());
    autotp::Phi3Model model(file.config(), plan, 0, *comm, *be);
    model.load(file);
    model.forward(ids.data(), nullptr, 1, int(ids.size()));
    const std::vector<float> logits = model.gather_logits();
    std::ofstream out(argv[3], std::ios::binary);
    out.write(reinterpret_cast<const char*>(logits.data()), std::streamsize(logits.size() * 4));
    autotp::check(bool(out), argv[3], ": cannot write the logits");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "checkpoint_logits: error: %s\n", e.what());
    rc = 1;
  }
  MPI_Finalize();
  return rc;
}
