#include "control.hpp"
#include "worker.hpp"

#include <forkpool/forkpool.hpp>

#include <cxxabi.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <memory>
#include <string>
#include <typeinfo>

namespace forkpool {

TaskError::TaskError(std::int64_t index, std::string type, std::string message)
    : Error("forkpool: f threw at item " + std::to_string(index) + ": " + type + ": " + message),
      index_(index),
      type_(std::move(type)),
      message_(std::move(message)) {}

TaskError::TaskError(std::string type, std::string message)
    : Error("forkpool: the task threw " + type + ": " + message),
      index_(-1),
      type_(std::move(type)),
      message_(std::move(message)) {}

}  // namespace forkpool

namespace forkpool::detail {
namespace {

template <std::size_t N>
void copy_truncated(char (&dst)[N], const char* src) {
  const std::size_t n = std::min(N - 1, std::strlen(src));
  std::memcpy(dst, src, n);
  dst[n] = '\0';
}

std::string current_exception_type() {
  const std::type_info* t = abi::__cxa_current_exception_type();
  if (t == nullptr) return "unknown exception";
  int status = 0;
  const std::unique_ptr<char, decltype(&std::free)> name(
      abi::__cxa_demangle(t->name(), nullptr, nullptr, &status), &std::free);
  return status == 0 && name ? name.get() : t->name();
}

}  // namespace

void record_exception(TaskErrorSlot& slot) noexcept {
  try {
    copy_truncated(slot.type, current_exception_type().c_str());
    try {
      throw;
    } catch (const std::exception& e) {
      copy_truncated(slot.message, e.what());
    } catch (...) {
      copy_truncated(slot.message, "(the exception is not a std::exception)");
    }
  } catch (...) {
    copy_truncated(slot.type, "unknown exception");
    copy_truncated(slot.message, "(its description could not be read)");
  }
}

void record_task_error(std::int64_t index) noexcept {
  Control* c = current_worker_control();
  if (c == nullptr) return;
  std::uint32_t expected = 0;
  if (!c->stop.compare_exchange_strong(expected, kTaskError, std::memory_order_relaxed)) return;
  c->error.index = index;
  record_exception(c->error);
}

void record_initializer_error(unsigned worker) noexcept {
  Control* c = current_worker_control();
  std::uint32_t expected = 0;
  // Relaxed: the parent reads the message after reaping this worker, which orders it.
  if (c == nullptr || !c->initializer_failed.compare_exchange_strong(expected, worker + 1,
                                                                     std::memory_order_relaxed))
    return;
  c->initializer_error.index = worker;
  record_exception(c->initializer_error);
}

}  // namespace forkpool::detail
