# cmake/onnx.cmake -- the optional ONNX library (onnx/): finds protobuf-c,
# protoc-c and Debian's onnx.proto (libonnx-dev), generates onnx.pb-c.c/.h in
# the build tree and builds lathe_onnx from them and onnx/*.c. Sets
# LATHE_ONNX (ON when all three are found) and LATHE_ONNX_MISSING (what is not,
# for the message `lathe import` and the skipping tests print).
find_program(LATHE_PROTOC_C NAMES protoc-c)
find_path(LATHE_PROTOBUF_C_INC protobuf-c/protobuf-c.h)
find_library(LATHE_PROTOBUF_C_LIB NAMES protobuf-c)
find_file(LATHE_ONNX_PROTO onnx.proto PATHS /usr/include/onnx NO_DEFAULT_PATH)
set(LATHE_ONNX_MISSING "")
if(NOT LATHE_PROTOC_C)
  string(APPEND LATHE_ONNX_MISSING " protoc-c (protobuf-c-compiler)")
endif()
if(NOT LATHE_PROTOBUF_C_INC OR NOT LATHE_PROTOBUF_C_LIB)
  string(APPEND LATHE_ONNX_MISSING " protobuf-c (libprotobuf-c-dev)")
endif()
if(NOT LATHE_ONNX_PROTO)
  string(APPEND LATHE_ONNX_MISSING " onnx.proto (libonnx-dev)")
endif()
string(STRIP "${LATHE_ONNX_MISSING}" LATHE_ONNX_MISSING)
if(LATHE_ONNX_MISSING)
  set(LATHE_ONNX OFF)
  message(STATUS "ONNX import/export: OFF (missing: ${LATHE_ONNX_MISSING}; ./setup.sh installs them)")
  return()
endif()
set(LATHE_ONNX ON)
message(STATUS "ONNX import/export: ON (${LATHE_ONNX_PROTO})")

# protoc-c writes onnx.pb-c.c and onnx.pb-c.h next to each other in the
# build tree; the proto is copied first so its directory is the only import
# path (onnx.proto imports nothing).
set(LATHE_ONNX_GEN ${PROJECT_BINARY_DIR}/onnx_gen)
add_custom_command(
  OUTPUT ${LATHE_ONNX_GEN}/onnx.pb-c.c ${LATHE_ONNX_GEN}/onnx.pb-c.h
  COMMAND ${CMAKE_COMMAND} -E make_directory ${LATHE_ONNX_GEN}
  COMMAND ${CMAKE_COMMAND} -E copy ${LATHE_ONNX_PROTO} ${LATHE_ONNX_GEN}/onnx.proto
  COMMAND ${LATHE_PROTOC_C} --proto_path=${LATHE_ONNX_GEN} --c_out=${LATHE_ONNX_GEN} ${LATHE_ONNX_GEN}/onnx.proto
  DEPENDS ${LATHE_ONNX_PROTO}
  COMMENT "protoc-c: onnx.pb-c.c from ${LATHE_ONNX_PROTO}"
  VERBATIM)
# Generated code is not ours to keep warning-clean (-Wextra's missing field
# initialisers in protoc-c's tables).
set_source_files_properties(${LATHE_ONNX_GEN}/onnx.pb-c.c PROPERTIES COMPILE_OPTIONS "-w")

file(GLOB LATHE_ONNX_SRC CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/onnx/*.c)
add_library(lathe_onnx STATIC ${LATHE_ONNX_SRC} ${LATHE_ONNX_GEN}/onnx.pb-c.c)
target_include_directories(lathe_onnx PUBLIC ${PROJECT_SOURCE_DIR}/onnx
                           PRIVATE ${PROJECT_SOURCE_DIR} ${PROJECT_SOURCE_DIR}/ir ${PROJECT_SOURCE_DIR}/runtime
                                   ${PROJECT_SOURCE_DIR}/frontend ${PROJECT_SOURCE_DIR}/include)
target_include_directories(lathe_onnx SYSTEM PUBLIC ${LATHE_ONNX_GEN} ${LATHE_PROTOBUF_C_INC})
target_compile_definitions(lathe_onnx PUBLIC LATHE_HAVE_ONNX=1)
target_link_libraries(lathe_onnx PUBLIC lathe ${LATHE_PROTOBUF_C_LIB})
