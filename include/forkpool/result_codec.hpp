// Map results that are not trivially copyable: how they cross from the workers to the parent.
//
// A worker cannot build a std::string in shared memory (its heap is private, and it must not
// allocate from the segment), so it encodes f's result as bytes into space the parent reserved
// in the segment, and the parent decodes them into the std::vector<R> that map returns. Supported
// out of the box: std::basic_string and std::vector of a trivially copyable element (not bool).
// For another type, specialise ResultCodec:
//
//   template <>
//   struct forkpool::ResultCodec<Polygon> {
//     static std::size_t size(const Polygon& p);               // the bytes encode will write
//     static void encode(const Polygon& p, std::byte* out);    // exactly size(p) bytes, unaligned
//     static Polygon decode(std::span<const std::byte> bytes); // in the parent
//   };
//
// R must also be default-constructible and movable. A trivially copyable R never goes through a
// codec: map writes it straight into the SharedArray it returns.
#pragma once

#include <concepts>
#include <cstddef>
#include <cstring>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

namespace forkpool {

template <class R>
struct ResultCodec;

template <class R>
concept EncodedResult =
    !std::is_trivially_copyable_v<R> && std::default_initializable<R> && std::movable<R> &&
    requires(const R& r, std::byte* out, std::span<const std::byte> bytes) {
  { ResultCodec<R>::size(r) } -> std::same_as<std::size_t>;
  ResultCodec<R>::encode(r, out);
  { ResultCodec<R>::decode(bytes) } -> std::same_as<R>;
};

template <class Char, class Traits>
requires std::is_trivially_copyable_v<Char>
struct ResultCodec<std::basic_string<Char, Traits>> {
  using String = std::basic_string<Char, Traits>;
  static std::size_t size(const String& s) { return s.size() * sizeof(Char); }
  static void encode(const String& s, std::byte* out) {
    if (!s.empty()) std::memcpy(out, s.data(), s.size() * sizeof(Char));
  }
  static String decode(std::span<const std::byte> bytes) {
    if constexpr (alignof(Char) == 1) {
      return String(reinterpret_cast<const Char*>(bytes.data()), bytes.size());
    } else {
      String s(bytes.size() / sizeof(Char), Char{});
      if (!s.empty()) std::memcpy(s.data(), bytes.data(), bytes.size());
      return s;
    }
  }
};

template <class T>
requires(std::is_trivially_copyable_v<T>&& std::default_initializable<T> &&
         !std::same_as<T, bool>) struct ResultCodec<std::vector<T>> {
  static std::size_t size(const std::vector<T>& v) { return v.size() * sizeof(T); }
  static void encode(const std::vector<T>& v, std::byte* out) {
    if (!v.empty()) std::memcpy(out, v.data(), v.size() * sizeof(T));
  }
  static std::vector<T> decode(std::span<const std::byte> bytes) {
    std::vector<T> v(bytes.size() / sizeof(T));
    if (!v.empty()) std::memcpy(v.data(), bytes.data(), bytes.size());
    return v;
  }
};

}  // namespace forkpool
