# package.cmake -- `cmake --install build --prefix P` makes Lathe usable
# from other projects:
#   P/bin/lathe                      the command
#   P/lib/liblathe.so                the compiler and JIT behind include/lathe.h
#   P/lib/liblathe_rt.a              what emitted code calls (rt/lathe_rt.h)
#   P/lib/liblathe_rt_noblas.a       the same without OpenBLAS (models emitted with --gemm generated)
#   P/include/lathe.h, lathe_rt.h
#   P/lib/cmake/Lathe/               find_package(Lathe): Lathe::lathe, Lathe::lathe_rt, Lathe::lathe_rt_noblas
#   P/lib/pkgconfig/lathe.pc, lathe_rt.pc, lathe_rt_noblas.pc
# liblathe.so is made from the same objects as the static liblathe the
# command and the tests link (so nothing is compiled twice); it exports only
# the public lathe_ names, and carries its dependencies (LLVM, OpenBLAS,
# json-c, zlib) as its own: a host program links -llathe and nothing else.
# liblathe_rt is installed static: an emitted model's binary then needs no
# Lathe library at run time.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

set_target_properties(lathe PROPERTIES POSITION_INDEPENDENT_CODE ON)

file(WRITE ${PROJECT_BINARY_DIR}/lathe_shared_stub.c "/* liblathe.so: its code is liblathe.a's (whole archive) */\n")
add_library(lathe_shared SHARED ${PROJECT_BINARY_DIR}/lathe_shared_stub.c)
target_link_libraries(lathe_shared PRIVATE "$<LINK_LIBRARY:WHOLE_ARCHIVE,lathe>")
target_link_options(lathe_shared PRIVATE "-Wl,--version-script=${PROJECT_SOURCE_DIR}/cmake/liblathe.map"
                    "-Wl,--no-undefined")
set_target_properties(lathe_shared PROPERTIES
  OUTPUT_NAME lathe EXPORT_NAME lathe VERSION ${PROJECT_VERSION} SOVERSION ${PROJECT_VERSION_MAJOR}
  LINK_DEPENDS ${PROJECT_SOURCE_DIR}/cmake/liblathe.map)
target_include_directories(lathe_shared INTERFACE $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>)
target_include_directories(lathe_rt INTERFACE $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>)
target_include_directories(lathe_rt_noblas INTERFACE $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>)

# The installed command and library find LLVM where the build found it.
set(CMAKE_INSTALL_RPATH_USE_LINK_PATH TRUE)
set_target_properties(lathe_cli lathe_shared PROPERTIES INSTALL_RPATH_USE_LINK_PATH TRUE)

install(TARGETS lathe_cli RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(TARGETS lathe_shared lathe_rt lathe_rt_noblas EXPORT LatheTargets
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR} ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR})
install(FILES include/lathe.h rt/lathe_rt.h DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})

set(LATHE_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/Lathe)
install(EXPORT LatheTargets NAMESPACE Lathe:: DESTINATION ${LATHE_CMAKE_DIR})
configure_package_config_file(cmake/LatheConfig.cmake.in ${PROJECT_BINARY_DIR}/LatheConfig.cmake
                              INSTALL_DESTINATION ${LATHE_CMAKE_DIR})
write_basic_package_version_file(${PROJECT_BINARY_DIR}/LatheConfigVersion.cmake
                                 COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/LatheConfig.cmake ${PROJECT_BINARY_DIR}/LatheConfigVersion.cmake
        DESTINATION ${LATHE_CMAKE_DIR})

# pkg-config files find their prefix from where they lie (${pcfiledir}),
# so they stay right under any --prefix given at install time.
file(RELATIVE_PATH LATHE_PC_PREFIX "/${CMAKE_INSTALL_LIBDIR}/pkgconfig" "/")
string(REGEX REPLACE "/$" "" LATHE_PC_PREFIX "${LATHE_PC_PREFIX}")
foreach(pc lathe lathe_rt lathe_rt_noblas)
  configure_file(cmake/${pc}.pc.in ${PROJECT_BINARY_DIR}/${pc}.pc @ONLY)
  install(FILES ${PROJECT_BINARY_DIR}/${pc}.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
endforeach()
