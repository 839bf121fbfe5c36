// Loading lives apart from the model so that programs and tests that never read a model file
// do not link the HDF5 reader.
#include "core/error.hpp"
#include "io/model_file.hpp"
#include "model/phi3_model.hpp"

namespace autotp {

void Phi3Model::load(const ModelFileReader& file) {
  const ModelConfig& fc = file.config();
  check(fc.hidden_size == config_.hidden_size &&
            fc.num_hidden_layers == config_.num_hidden_layers &&
            fc.vocab_size == config_.vocab_size,
        file.path(), ": the model file's config (hidden ", fc.hidden_size, ", layers ",
        fc.num_hidden_layers, ", vocab ", fc.vocab_size, ") does not match this model's (hidden ",
        config_.hidden_size, ", layers ", config_.num_hidden_layers, ", vocab ", config_.vocab_size,
        ")");
  std::vector<float> host;
  for (auto& slot : layout_.slots) {
    host.resize(slot.numel);
    file.read_shard(*slot.spec, tg_.rank(), DType::F32, host.data());  // checks the shape
    be_.values_from_host(host.data(), params_ + slot.offset, slot.numel);
  }
  params_changed();
}

}  // namespace autotp
