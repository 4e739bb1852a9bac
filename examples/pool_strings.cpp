// Results that are not trivially copyable: std::string and std::vector<T> come back from the
// workers as a std::vector of them (forkpool/result_codec.hpp).
#include <forkpool/forkpool.hpp>

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

std::string fizzbuzz(std::int64_t i) {
  if (i % 15 == 0) return "FizzBuzz";
  if (i % 3 == 0) return "Fizz";
  if (i % 5 == 0) return "Buzz";
  return std::to_string(i);
}

std::vector<std::int64_t> divisors(std::int64_t n) {
  std::vector<std::int64_t> d;
  for (std::int64_t k = 1; k <= n; ++k)
    if (n % k == 0) d.push_back(k);
  return d;
}

int main() {
  forkpool::Pool pool(2);

  const std::vector<std::string> words = pool.map(fizzbuzz, forkpool::range(1, 16));
  for (std::size_t k = 0; k < words.size(); ++k)
    std::printf("%s%s", k == 0 ? "" : " ", words[k].c_str());
  std::printf("\n");

  const std::vector<std::int64_t> numbers{12, 28, 97};
  const std::vector<std::vector<std::int64_t>> lists = pool.map(divisors, numbers);
  for (std::size_t k = 0; k < numbers.size(); ++k) {
    std::printf("divisors of %lld:", static_cast<long long>(numbers[k]));
    for (std::int64_t d : lists[k]) std::printf(" %lld", static_cast<long long>(d));
    std::printf("\n");
  }
}
