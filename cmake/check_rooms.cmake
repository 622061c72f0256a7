# The include graph of src/ against DESIGN.md's rooms: every `#include "room/..."` of a room's
# files must name the room itself, config/ (below every room), or a room that its "may use" column
# allows, directly or through the rooms those use. Also the rules DESIGN.md states by name: only
# config/ includes yaml-cpp, only cli/ includes CLI11, only backend/cpu/ includes Eigen, and only
# backend/cuda/ holds CUDA code. Static libraries would report a wrong arrow at no link step at
# all, since the executable links every room; this check does.
#
#   cmake -DMOESIM_SOURCE_DIR=<src> -DMOESIM_ROOMS_FILE=<build>/moesim_rooms.cmake -P check_rooms.cmake
#
# MOESIM_ROOMS_FILE sets MOESIM_ROOMS and MOESIM_USES_<room> (written by src/CMakeLists.txt from
# its table, the one that also makes the links). Exits non-zero listing every forbidden include.
cmake_minimum_required(VERSION 3.25)

foreach(var MOESIM_SOURCE_DIR MOESIM_ROOMS_FILE)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "check_rooms: -D${var}=... is required")
  endif()
endforeach()
include(${MOESIM_ROOMS_FILE})

# A room's allowed rooms: what it uses, and what those use, and so on.
foreach(room ${MOESIM_ROOMS})
  set(reach "")
  set(todo ${MOESIM_USES_${room}})
  while(todo)
    list(POP_FRONT todo next)
    if(NOT next IN_LIST reach)
      list(APPEND reach ${next})
      list(APPEND todo ${MOESIM_USES_${next}})
    endif()
  endwhile()
  set(allowed_${room} ${room} config ${reach})
endforeach()
set(allowed_config config)
set(all_rooms ${MOESIM_ROOMS} config)

set(problems "")
macro(problem text)
  string(APPEND problems "  ${text}\n")
endmacro()

# Every folder under src/ must be a room of the table.
file(GLOB entries LIST_DIRECTORIES true RELATIVE ${MOESIM_SOURCE_DIR} ${MOESIM_SOURCE_DIR}/*)
foreach(entry ${entries})
  if(IS_DIRECTORY ${MOESIM_SOURCE_DIR}/${entry} AND NOT entry IN_LIST all_rooms)
    problem("src/${entry}/ is not a room of the table in src/CMakeLists.txt (add it there)")
  endif()
endforeach()

foreach(room ${all_rooms})
  file(GLOB_RECURSE files RELATIVE ${MOESIM_SOURCE_DIR}
       ${MOESIM_SOURCE_DIR}/${room}/*.h ${MOESIM_SOURCE_DIR}/${room}/*.hpp
       ${MOESIM_SOURCE_DIR}/${room}/*.cpp ${MOESIM_SOURCE_DIR}/${room}/*.cu
       ${MOESIM_SOURCE_DIR}/${room}/*.cuh)
  foreach(file ${files})
    if(file MATCHES "\\.cuh?$" AND NOT file MATCHES "^backend/cuda/")
      problem("${file}: CUDA code outside backend/cuda/")
    endif()
    file(STRINGS ${MOESIM_SOURCE_DIR}/${file} lines REGEX "^[ \t]*#[ \t]*include")
    foreach(line ${lines})
      set(why "")
      if(line MATCHES "#[ \t]*include[ \t]*\"([A-Za-z0-9_]+)/")
        set(target ${CMAKE_MATCH_1})
        if(target IN_LIST all_rooms AND NOT target IN_LIST allowed_${room})
          set(may ${allowed_${room}})
          list(REMOVE_ITEM may ${room})
          string(REPLACE ";" ", " may "${may}")
          set(why "${room}/ may not use ${target}/ (it may use: ${may})")
        endif()
      elseif(line MATCHES "#[ \t]*include[ \t]*<yaml-cpp/" AND NOT room STREQUAL "config")
        set(why "only config/ includes yaml-cpp")
      elseif(line MATCHES "#[ \t]*include[ \t]*<CLI/" AND NOT room STREQUAL "cli")
        set(why "only cli/ includes CLI11")
      elseif(line MATCHES "#[ \t]*include[ \t]*<(unsupported/)?Eigen/" AND NOT file MATCHES "^backend/cpu/")
        set(why "only backend/cpu/ includes Eigen")
      elseif(line MATCHES "#[ \t]*include[ \t]*<(cuda|cublas|curand|cub/|thrust/)" AND NOT file MATCHES "^backend/cuda/")
        set(why "only backend/cuda/ includes CUDA headers")
      endif()
      if(why)
        string(STRIP "${line}" line)
        problem("src/${file}: ${line}: ${why}")
      endif()
    endforeach()
  endforeach()
endforeach()

if(problems)
  message(FATAL_ERROR "check_rooms: includes that DESIGN.md's rooms forbid:\n${problems}")
endif()
message(STATUS "check_rooms: the include graph of src/ follows DESIGN.md's rooms")
