#include "dist/cuda/device_comm_base.hpp"

namespace autotp {

bool DeviceComm::on_device(const void* p) {
  cudaPointerAttributes a{};
  if (cudaPointerGetAttributes(&a, p) != cudaSuccess) {
    cudaGetLastError();  // an unknown pointer is host memory; the error must not linger
    return false;
  }
  return a.type == cudaMemoryTypeDevice || a.type == cudaMemoryTypeManaged;
}

bool DeviceComm::both_on_device(const void* send, const void* recv, const char* what) {
  const bool s = on_device(send), r = on_device(recv);
  check(s == r, "communicator ", what, ": the send buffer is in ", s ? "device" : "host",
        " memory but the receive buffer in ", r ? "device" : "host",
        " memory; pass both on the same side");
  return s;
}

void DeviceComm::all_reduce_sum(float* buf, size_t n) {
  if (n == 0) return;
  if (on_device(buf))
    dev_all_reduce(buf, n, ReduceOp::Sum);
  else
    host_->all_reduce_sum(buf, n);
}

void DeviceComm::all_reduce_max(float* buf, size_t n) {
  if (n == 0) return;
  if (on_device(buf))
    dev_all_reduce(buf, n, ReduceOp::Max);
  else
    host_->all_reduce_max(buf, n);
}

void DeviceComm::all_gather(const float* send, float* recv, size_t count) {
  if (count == 0) return;
  if (both_on_device(send, recv, "all_gather"))
    dev_all_gather(send, recv, count);
  else
    host_->all_gather(send, recv, count);
}

void DeviceComm::reduce_scatter_sum(const float* send, float* recv, size_t count) {
  if (count == 0) return;
  if (both_on_device(send, recv, "reduce_scatter"))
    dev_reduce_scatter_sum(send, recv, count);
  else
    host_->reduce_scatter_sum(send, recv, count);
}

void DeviceComm::broadcast(float* buf, size_t n, int root) {
  if (n == 0) return;
  if (on_device(buf))
    dev_broadcast(buf, n, root);
  else
    host_->broadcast(buf, n, root);
}

void DeviceComm::reduce_sum_async(float* buf, size_t n, int root) {
  if (n == 0) return;
  if (on_device(buf))
    dev_reduce_sum_async(buf, n, root);
  else
    host_->reduce_sum_async(buf, n, root);
}

void DeviceComm::all_reduce_sum_async(float* buf, size_t n) {
  if (n == 0) return;
  if (on_device(buf))
    dev_all_reduce_sum_async(buf, n);
  else
    host_->all_reduce_sum_async(buf, n);
}

void DeviceComm::wait_all() {
  host_->wait_all();
  dev_wait_all();
}

void DeviceComm::wait_until(size_t mark) {
  host_->wait_all();
  dev_wait_until(mark);
}

}  // namespace autotp
