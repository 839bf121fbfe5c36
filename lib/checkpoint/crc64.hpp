#pragma once
// CRC-64/XZ (ECMA-182 polynomial, reflected, init and final xor ~0): the checksum a checkpoint's
// manifest records for each of its files, as `xz` and `crc64sum` compute it.
#include <cstddef>
#include <cstdint>
#include <string>

namespace autotp {

// crc = crc64(data, n, crc) continues a running checksum; start from 0.
uint64_t crc64(const void* data, size_t n, uint64_t crc = 0);
// The whole file's CRC-64 as 16 lowercase hex digits; Error names the file if it cannot be read.
std::string file_crc64(const std::string& path);

}  // namespace autotp
