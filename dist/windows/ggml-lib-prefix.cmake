# Included after ggml's project() when the core is cross-built for
# x86_64-pc-windows-gnu (CMAKE_PROJECT_ggml_INCLUDE, set by
# scripts/build-windows-core). ggml names its static libraries ggml.a on
# every Windows toolchain (MSVC style); rustc's windows-gnu target, which
# whisper-rs-sys links them with, looks for libggml.a. Give every library
# ggml adds the usual prefix back.
function(add_library name)
  _add_library(${name} ${ARGN})
  if (NOT "${ARGV1}" MATCHES "^(ALIAS|INTERFACE|IMPORTED)$")
    set_target_properties(${name} PROPERTIES PREFIX "lib")
  endif()
endfunction()
