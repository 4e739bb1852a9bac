// Numeric flags of the benchmarks (--name=N), taken out of argv before Google Benchmark sees it
// (it rejects flags it does not know).
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <initializer_list>

namespace forkpool_bench {

struct UintFlag {
  const char* prefix;  // "--name="
  std::uint64_t* value;
  std::uint64_t min;
  std::uint64_t max;
};

// Sets each flag found in argv and removes it; false (after saying why on stderr) for a value
// that is not a number in [min, max].
inline bool take_uint_flags(int& argc, char** argv, std::initializer_list<UintFlag> flags,
                            const char* program) {
  int out = 1;
  for (int k = 1; k < argc; ++k) {
    const UintFlag* flag = nullptr;
    for (const UintFlag& f : flags)
      if (std::strncmp(argv[k], f.prefix, std::strlen(f.prefix)) == 0) flag = &f;
    if (flag == nullptr) {
      argv[out++] = argv[k];
      continue;
    }
    const char* text = argv[k] + std::strlen(flag->prefix);
    char* end = nullptr;
    const std::uint64_t v = std::strtoull(text, &end, 0);
    if (*text == '\0' || *end != '\0' || v < flag->min || v > flag->max) {
      std::fprintf(stderr, "%s: bad value in %s\n", program, argv[k]);
      return false;
    }
    *flag->value = v;
  }
  argc = out;
  argv[argc] = nullptr;
  return true;
}

}  // namespace forkpool_bench
