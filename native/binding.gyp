# Builds the flextok native kernels (float32 SIMD GEMM, attention, row ops) as a Node-API addon.
# Everything is compiled for the baseline of the target (x86-64, aarch64); the AVX2/AVX-512 back ends
# (src/isa/*.cc, kernels written once over src/simd/) live in functions with target attributes and are
# picked at run time, so the binary runs on any x86-64 CPU.
{
  "targets": [
    {
      "target_name": "flextok_native",
      "sources": [
        "src/addon.cc",
        "src/threadpool.cc",
        "src/gemm.cc",
        "src/attention.cc",
        "src/rowops.cc",
        "src/peak.cc",
        "src/isa/avx512.cc",
        "src/isa/avx2.cc",
        "src/isa/neon.cc",
        "src/isa/generic.cc"
      ],
      "include_dirs": ["<!@(node -p \"require('node-addon-api').include\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS"],
      "cflags!": ["-fno-exceptions", "-O2", "-O0"],
      "cflags_cc!": ["-fno-exceptions", "-fno-rtti", "-std=gnu++17", "-std=gnu++20"],
      "cflags": ["-O3", "-fno-math-errno", "-fno-trapping-math", "-ffp-contract=off", "-pthread", "-Wall", "-Wno-unused-function", "-Wno-maybe-uninitialized", "-Wno-uninitialized"],
      "cflags_cc": ["-std=c++17", "-fexceptions", "-O3"],
      "ldflags": ["-pthread"],
      "xcode_settings": {
        "GCC_ENABLE_CPP_EXCEPTIONS": "YES",
        "CLANG_CXX_LANGUAGE_STANDARD": "c++17",
        "OTHER_CFLAGS": ["-O3"]
      }
    }
  ]
}
