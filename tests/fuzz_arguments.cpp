// libFuzzer target over the public argument checks that run before anything forks: range(), the
// Schedule factories of every kind with Schedule::name(), and Pool with no processes or more than
// max_processes(). Each must take exactly its valid arguments and otherwise throw
// std::invalid_argument whose message names the argument, so that users can tell which one of
// theirs was wrong. No valid Pool is built here: that would fork on every input.
#include <forkpool/forkpool.hpp>

#include "fuzz_check.hpp"

#include <fuzzer/FuzzedDataProvider.h>

#include <pthread.h>

#include <climits>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <tuple>

namespace {

using forkpool::Options;
using forkpool::Pool;
using forkpool::Schedule;

bool contains(const std::string& s, std::string_view part) {
  return s.find(part) != std::string::npos;
}

// The message of the std::invalid_argument that f throws, if it throws one. Any other exception
// escapes, and libFuzzer reports it.
template <class F>
std::optional<std::string> invalid_argument(F f) {
  try {
    f();
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return std::nullopt;
}

void ranges(FuzzedDataProvider& in) {
  const auto first = in.ConsumeIntegral<std::int64_t>();
  const auto last = in.ConsumeIntegral<std::int64_t>();
  forkpool::Range r{};
  const auto error = invalid_argument([&] { r = forkpool::range(first, last); });
  if (first > last)
    CHECK(error && contains(*error, "first") && contains(*error, std::to_string(first)) &&
          contains(*error, "last") && contains(*error, std::to_string(last)));
  else
    CHECK(!error && r.first == first && r.last == last);

  const auto error_to = invalid_argument([&] { r = forkpool::range(last); });
  if (last < 0)
    CHECK(error_to && contains(*error_to, "last") && contains(*error_to, std::to_string(last)));
  else
    CHECK(!error_to && r.first == 0 && r.last == last);
}

void schedules(FuzzedDataProvider& in) {
  const auto n = in.ConsumeIntegral<std::size_t>();
  const std::string value = std::to_string(n);
  Schedule s = Schedule::static_blocks();
  CHECK(s.kind() == Schedule::Kind::static_blocks && s.parameter() == 0 &&
        s.name() == "static_blocks");

  const auto dynamic_error = invalid_argument([&] { s = Schedule::dynamic(n); });
  if (n == 0)
    CHECK(dynamic_error && contains(*dynamic_error, "chunk"));
  else
    CHECK(!dynamic_error && s.kind() == Schedule::Kind::dynamic && s.parameter() == n &&
          s.name() == "dynamic(" + value + ")");

  const auto guided_error = invalid_argument([&] { s = Schedule::guided(n); });
  if (n == 0)
    CHECK(guided_error && contains(*guided_error, "min_chunk"));
  else
    CHECK(!guided_error && s.kind() == Schedule::Kind::guided && s.parameter() == n &&
          s.name() == "guided(" + value + ")" && s != Schedule::dynamic(n));

  s = Schedule::work_stealing(n);
  CHECK(s.kind() == Schedule::Kind::work_stealing && s.parameter() == n &&
        s.name() == (n == 0 ? "work_stealing(auto)" : "work_stealing(" + value + ")") &&
        s == Schedule::work_stealing(n));

  const auto chunked_error = invalid_argument([&] { s = Schedule::static_chunked(n); });
  if (n == 0)
    CHECK(chunked_error && contains(*chunked_error, "static_chunked") &&
          contains(*chunked_error, "chunk"));
  else
    CHECK(!chunked_error && s.kind() == Schedule::Kind::static_chunked && s.parameter() == n &&
          s.second_parameter() == 0 && s.name() == "static_chunked(" + value + ")" &&
          s != Schedule::dynamic(n));

  s = Schedule::python(n);
  CHECK(s.kind() == Schedule::Kind::python && s.parameter() == n && s.second_parameter() == 0 &&
        s.name() == (n == 0 ? "python(auto)" : "python(" + value + ")") &&
        s != Schedule::work_stealing(n));

  // trapezoid(first, last = n): last >= 1, and first is 0 (N / 2P) or at least last.
  const auto first = in.ConsumeIntegral<std::size_t>();
  const std::string first_value = std::to_string(first);
  const auto trapezoid_error = invalid_argument([&] { s = Schedule::trapezoid(first, n); });
  if (n == 0)
    CHECK(trapezoid_error && contains(*trapezoid_error, "trapezoid") &&
          contains(*trapezoid_error, "last"));
  else if (first != 0 && first < n)
    CHECK(trapezoid_error && contains(*trapezoid_error, "first = " + first_value) &&
          contains(*trapezoid_error, "last = " + value));
  else
    CHECK(!trapezoid_error && s.kind() == Schedule::Kind::trapezoid && s.parameter() == first &&
          s.second_parameter() == n &&
          s.name() ==
              "trapezoid(" + (first == 0 ? std::string("auto") : first_value) + ", " + value + ")");

  // The kinds without parameters.
  for (const auto& [made, kind, name] :
       {std::tuple{Schedule::factoring(), Schedule::Kind::factoring, "factoring"},
        std::tuple{Schedule::fixed_size(), Schedule::Kind::fixed_size, "fixed_size"},
        std::tuple{Schedule::adaptive_factoring(), Schedule::Kind::adaptive_factoring,
                   "adaptive_factoring"},
        std::tuple{Schedule::adaptive_stealing(), Schedule::Kind::adaptive_stealing,
                   "adaptive_stealing"},
        std::tuple{Schedule::automatic(), Schedule::Kind::automatic, "automatic"}})
    CHECK(made.kind() == kind && made.parameter() == 0 && made.second_parameter() == 0 &&
          made.name() == name);
}

void pools(FuzzedDataProvider& in) {
  const auto zero = invalid_argument([] { Pool pool(0u); });
  CHECK(zero && contains(*zero, "processes"));

  const unsigned max = Pool::max_processes();
  if (max == UINT_MAX) return;  // no count is too many
  const auto n = in.ConsumeIntegralInRange<unsigned>(max + 1, UINT_MAX);
  const auto error = in.ConsumeBool()
                         ? invalid_argument([&] { Pool pool(n); })
                         : invalid_argument([&] { Pool pool(Options{.processes = n}); });
  CHECK(error && contains(*error, "processes") && contains(*error, std::to_string(n)));
}

}  // namespace

// Should a check above stop throwing, the Pool would go on to fork up to 2^32 processes: stop in
// fork() instead, before the first one.
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  pthread_atfork([] { forkpool_fuzz_fail(__FILE__, __LINE__, "a Pool got as far as fork()"); },
                 nullptr, nullptr);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  FuzzedDataProvider in(data, size);
  switch (in.ConsumeIntegralInRange<int>(0, 2)) {
    case 0:
      ranges(in);
      break;
    case 1:
      schedules(in);
      break;
    case 2:
      pools(in);
      break;
  }
  return 0;
}
