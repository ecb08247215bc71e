# Run at install time (install(SCRIPT)), when the real prefix is known: writes the
# systemd units with the installed programs' paths, and the config files to
# /etc/dynamos for a /usr install (the Debian package), else to PREFIX/etc/dynamos.
if(CMAKE_INSTALL_PREFIX STREQUAL "/usr")
  set(confdir /etc/dynamos)
else()
  set(confdir "${CMAKE_INSTALL_PREFIX}/etc/dynamos")
endif()
set(bindir "${CMAKE_INSTALL_PREFIX}/bin")
# In the build tree (set by packaging/CMakeLists.txt): in script mode the current binary
# directory is wherever `cmake --install` runs, often the source tree.
set(work "${DYNAMOS_UNITS_WORK}")
foreach(unit gangd dynamosd dynamos-zram-swap)
  set(DYNAMOS_BINDIR "${bindir}")
  set(DYNAMOS_CONFDIR "${confdir}")
  configure_file("${DYNAMOS_PACKAGING_DIR}/systemd/${unit}.service.in" "${work}/${unit}.service" @ONLY)
  file(INSTALL "${work}/${unit}.service" DESTINATION "${CMAKE_INSTALL_PREFIX}/lib/systemd/system")
endforeach()
file(INSTALL "${DYNAMOS_PACKAGING_DIR}/config/gangd.conf" "${DYNAMOS_PACKAGING_DIR}/config/dynamosd.conf"
             "${DYNAMOS_PACKAGING_DIR}/config/hostfile" DESTINATION "${confdir}")
